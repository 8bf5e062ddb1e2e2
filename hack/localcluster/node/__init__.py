"""The process node: a kubelet stand-in that really runs the pods bound to its nodes.

Run as ``python -m localcluster.node`` (``hack/cluster --process up`` starts it). Modules:
``nodes`` (Node objects, labels, taints, Leases), ``envvars`` (env resolution),
``volumes`` (volumes as directories), ``container`` (one container as a local process in a
private mount namespace), ``probes``, ``podstatus`` (kubelet-like status, pure),
``podworker`` (one pod's lifecycle), ``manager`` (watch and dispatch, preemption),
``control`` (the loopback HTTP control API), ``handle`` (its client) and ``kubeletapi``
(the container logs endpoint the API server calls for ``kubectl logs``).
"""
