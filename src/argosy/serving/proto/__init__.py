"""The Open Inference Protocol's V2 gRPC service: vendored ``.proto`` and generated modules.

``grpc_predict_v2.proto`` is KServe's (see ``PROVENANCE.md``); ``grpc_predict_v2_pb2`` and
``grpc_predict_v2_pb2_grpc`` are generated from it by ``make grpc-stubs``. The messages register
as ``inference.*`` in protobuf's default pool, as tritonclient's and kserve's own copies do, so
none of those can be imported in the same process as these (the tests run each client in its own).
"""
