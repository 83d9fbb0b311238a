"""Workloads served inside pods: a built-in agnhost-compatible server run for many pods by one process."""
