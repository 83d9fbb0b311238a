"""The VPC fabric: an Open vSwitch instance per machine and the SDN controller that drives it.

`ovs` starts (or reuses) Open vSwitch and manages kubemu's bridges and ports; `sdn` runs
the os-ken VPC router app (`controllers.vpc_app`) in a background thread.
"""
