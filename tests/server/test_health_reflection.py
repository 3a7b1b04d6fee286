"""Health checking and server reflection are on, so grpcurl and load balancers work out of the box."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


def test_reflection_lists_the_services(shared_server):
    with shared_server.channel(api_key=None) as channel:  # open without a key
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"shanakht.v1.IdentityService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        method_names = {m.name for m in database.FindFileContainingSymbol("shanakht.v1.IdentityService").service[0].method}
        assert {"Enroll", "EnrollStream", "Identify", "Verify", "ExtractTemplate", "GetSubject", "DeleteSubject",
                "ListGalleries", "GalleryStats"} <= method_names


def test_health_reports_serving_for_the_service(shared_server):
    with shared_server.channel(api_key=None) as channel:  # open without a key
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "shanakht.v1.IdentityService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING
