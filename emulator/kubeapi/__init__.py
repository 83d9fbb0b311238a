"""A Kubernetes API endpoint (HTTPS, bearer token) in front of kubemu's ApiServer, for kubectl and client libraries."""
