"""The cloud side of a GKE cluster's load balancers: what Google Cloud does outside the nodes.

- `lbip`: external and internal load balancer IPs (`status.loadBalancer.ingress`).
- `healthcheck`: GKE's L4 health checks (state machine, thresholds, probe schedule).
- `prober`: real HTTP probes sent from a prober host's namespace (used by its NodeAgent).
- `vpcstate`: the desired VPC state (endpoints, load balancers, firewall) for the SDN controller.
- `names`: GKE's names for node tags, load balancers and the firewall rules it creates.
- `controller`: `CloudCore` (decisions, no Ray) and `CloudController` (the actor class).
"""
