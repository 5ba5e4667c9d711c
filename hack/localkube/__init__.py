"""A real, local Kubernetes control plane for end-to-end tests."""
