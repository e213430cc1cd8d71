"""The SSH gateway: one port through which users reach their instances' SSH servers."""
