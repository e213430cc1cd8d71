"""The platform on Kubernetes: every manifest from one values file (`workbench kubernetes`)."""
