"""Link impairments (delay, jitter, loss, rate) per link class, with netem or an NFQUEUE fallback."""
