"""What runs inside a pod's or host's namespace: the built-in agnhost-compatible servers (one process
for many pods), the Google front end's HAProxy and the GCP health-check prober."""
