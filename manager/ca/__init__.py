"""The cluster's certificate authority: root CA, join tokens, node certificates, RPC authorization.

Managers hold the root CA key and issue node certificates (CN node id, OU role, O cluster id)
to nodes that prove a join token; every gRPC method states which roles may call it.
"""
