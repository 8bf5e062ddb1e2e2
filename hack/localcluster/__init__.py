"""The local real environment: a Kubernetes control plane, an S3 server and a process node.

Run through ``hack/cluster``; the pytest fixtures in ``tests/conftest.py`` use it directly.
"""
