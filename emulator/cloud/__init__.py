"""The cloud side of a GKE cluster's load balancers: what Google Cloud does outside the nodes.

- `lbip`: external and internal load balancer IPs (`status.loadBalancer.ingress`).
- `healthcheck`: GKE's L4 health checks (state machine, thresholds, probe schedule).
- the probes themselves and the front end's HAProxy run on the prober host's NodeAgent
  (emulator/workloads/hc_prober.py, gfe_proxy.py); the controller asks that agent.
- `vpcstate`: the desired VPC state (endpoints, load balancers, firewall) for the SDN controller.
- `names`: GKE's names for node tags, load balancers and the firewall rules it creates.
- `controller`: `CloudCore` (decisions, no Ray) and `CloudController` (the actor class).
"""
