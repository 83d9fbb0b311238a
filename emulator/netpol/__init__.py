"""NetworkPolicy: model, pure evaluator, iptables/ipset renderer, per-node enforcer, reachability."""
