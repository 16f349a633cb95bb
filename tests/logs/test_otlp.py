"""OTLP logs over gRPC (docs/protocols/logs.md, "OTLP"): Python `logging` through the official
OpenTelemetry SDK's LoggingHandler and OTLP/gRPC exporter, read back over the HTTP API; and
the refusals (token, rate limit, size, malformed, disk full) seen with a raw gRPC stub.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from .conftest import OPERATOR_TOKEN, TOKENS, Collector, CollectorFactory, tenants_toml
from .test_durability import small_fs  # noqa: F401  (the 1 MiB tmpfs fixture)

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocols" / "logs.md"


class OtelLogging:
    """A Python logger wired to the collector the way an app would do it."""

    def __init__(self, c: Collector, headers: dict[str, str], resource: dict[str, str],
                 compression: grpc.Compression | None = None) -> None:
        self.exporter = OTLPLogExporter(endpoint=c.otlp_endpoint(), insecure=True, headers=headers,
                                        timeout=5, compression=compression)
        self.provider = LoggerProvider(resource=Resource.create(resource))
        # Simple (synchronous) processor: each logging call is one Export that returns once
        # the collector has the record durably.
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        with warnings.catch_warnings():
            # The SDK's handler is deprecated in favour of a contrib package; it still works.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.handler = LoggingHandler(level=logging.DEBUG, logger_provider=self.provider)
        self.logger = logging.getLogger(f"shop.payments.{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.provider.shutdown()


@pytest.fixture
def otel_loggers() -> Iterator[list[OtelLogging]]:
    made: list[OtelLogging] = []
    yield made
    for o in made:
        o.close()


def stub(c: Collector) -> tuple[grpc.Channel, logs_service_pb2_grpc.LogsServiceStub]:
    host, port = c.addr("otlp")
    # A channel of its own: gRPC would otherwise share one connection between channels.
    channel = grpc.insecure_channel(f"{host}:{port}",
                                    options=[("grpc.use_local_subchannel_pool", 1)])
    return channel, logs_service_pb2_grpc.LogsServiceStub(channel)


def string(v: str) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(string_value=v)


def request(*messages: str, service: str = "raw-client", attrs: dict[str, str] | None = None
            ) -> logs_service_pb2.ExportLogsServiceRequest:
    records = [
        logs_pb2.LogRecord(
            severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
            body=string(m),
            attributes=[common_pb2.KeyValue(key=k, value=string(v)) for k, v in (attrs or {}).items()],
        )
        for m in messages
    ]
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[
        logs_pb2.ResourceLogs(
            resource=resource_pb2.Resource(attributes=[
                common_pb2.KeyValue(key="service.name", value=string(service))]),
            scope_logs=[logs_pb2.ScopeLogs(log_records=records)],
        )
    ])


def export(c: Collector, req: Any, metadata: list[tuple[str, str]] | None = None
           ) -> logs_service_pb2.ExportLogsServiceResponse:
    channel, s = stub(c)
    try:
        return s.Export(req, metadata=metadata or [], timeout=10)
    finally:
        channel.close()


def export_error(c: Collector, req: Any, metadata: list[tuple[str, str]] | None = None
                 ) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        export(c, req, metadata)
    return info.value


def bearer(app: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[app]}")]


def test_python_logging_through_the_otel_sdk(collector: Collector, otel_loggers: list[OtelLogging]
                                             ) -> None:
    o = OtelLogging(collector, {"authorization": f"Bearer {TOKENS['shop']}"},
                    {"service.name": "shop", "service.version": "1.4.2",
                     "service.instance.id": "web.3", "deployment.environment": "test"})
    otel_loggers.append(o)
    o.logger.debug("cart loaded")
    o.logger.info("order %s placed", "o-17", extra={"order_id": "o-17", "items": 3})
    o.logger.warning("stock low")
    try:
        {}["coupon"]
    except KeyError:
        o.logger.exception("payment failed")
    o.logger.critical("giving up")
    # Synchronous export answered after durability: the events are there now, no polling.
    got = collector.events("shop", TOKENS["shop"])
    assert [e["message"] for e in got] == [
        "cart loaded", "order o-17 placed", "stock low", "payment failed", "giving up"]
    assert [e["level"] for e in got] == ["debug", "info", "warning", "error", "critical"]
    for e in got:
        assert e["source"] == "otlp"
        assert e["logger"] == o.logger.name
        assert e["version"] == "1.4.2"
        assert e["instance"] == "web.3"
        assert e["timestamp"].endswith("Z")
        assert e["extra"]["resource"] == {"service.name": "shop", "deployment.environment": "test"}
        assert "code.function.name" in e["extra"] or "code.function" in e["extra"], e["extra"]
    assert got[1]["extra"]["order_id"] == "o-17"
    assert got[1]["extra"]["items"] == 3
    exc = got[3]["exception"]
    assert exc.startswith("Traceback (most recent call last):") and "KeyError: 'coupon'" in exc
    assert "exception.stacktrace" not in got[3]["extra"]
    # The query API's filters apply to OTLP events like any other.
    assert [e["message"] for e in collector.events("shop", TOKENS["shop"], level="error")] == [
        "payment failed", "giving up"]
    assert collector.metric("log_otlp_requests_total", OPERATOR_TOKEN) >= 5
    assert collector.metric("log_events_accepted_total", OPERATOR_TOKEN, app="shop") == 5


def test_the_documented_python_example_runs(collectors: CollectorFactory, tmp_path: Path) -> None:
    c = collectors.start(tenants='[[app]]\nname = "guestbook"\ntoken = "gb-token-0123456789"\n')
    section = DOC.read_text().split("### Python: the OpenTelemetry SDK", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "no Python example in the OTLP section of docs/protocols/logs.md"
    script = tmp_path / "example.py"
    script.write_text(code.group(1).replace("http://127.0.0.1:4317", c.otlp_endpoint()))
    env = dict(os.environ, BERTH_LOG_TOKEN="gb-token-0123456789", BERTH_VERSION="2.0.1")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = c.events("guestbook", "gb-token-0123456789")
    assert [(e["logger"], e["level"], e["message"]) for e in got] == [
        ("guestbook.db", "warning", "slow query"), ("guestbook", "error", "division failed")]
    assert got[0]["extra"]["ms"] == 812 and got[0]["version"] == "2.0.1"
    assert "ZeroDivisionError: division by zero" in got[1]["exception"]


def test_gzip_and_x_berth_token(collector: Collector, otel_loggers: list[OtelLogging]) -> None:
    o = OtelLogging(collector, {"x-berth-token": f"billing:{TOKENS['billing']}"},
                    {"service.name": "billing"}, compression=grpc.Compression.Gzip)
    otel_loggers.append(o)
    o.logger.info("invoice %d sent", 42)
    got = collector.events("billing", TOKENS["billing"])
    assert [e["message"] for e in got] == ["invoice 42 sent"]


def test_without_a_valid_token_nothing_is_stored(collector: Collector) -> None:
    for metadata in ([], [("authorization", "Bearer wrong")], [("x-berth-token", "shop:wrong")],
                     [("x-berth-token", f"billing:{TOKENS['shop']}")]):
        err = export_error(collector, request("sneaky"), metadata)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (metadata, err)
    err = export_error(collector, request("sneaky"))
    assert "authorization: Bearer" in err.details()
    assert collector.metric("log_unauthenticated_total", OPERATOR_TOKEN) >= 5
    assert collector.events("shop", TOKENS["shop"]) == []
    # A real exporter with a wrong token gets the refusal too (and does not retry it).
    exporter = OTLPLogExporter(endpoint=collector.otlp_endpoint(), insecure=True,
                               headers={"authorization": "Bearer wrong"}, timeout=5)
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("x").emit(body="nope")
    provider.shutdown()
    assert collector.events("shop", TOKENS["shop"]) == []


def test_two_apps_are_isolated(collector: Collector) -> None:
    export(collector, request("shop secret"), bearer("shop"))
    export(collector, request("billing secret"), bearer("billing"))
    assert [e["message"] for e in collector.events("shop", TOKENS["shop"])] == ["shop secret"]
    assert [e["message"] for e in collector.events("billing", TOKENS["billing"])] == [
        "billing secret"]
    status, _ = collector.http_get("/v1/apps/billing/events", TOKENS["shop"])
    assert status == 403
    # A token cannot write into another app, whatever the request says about itself.
    err = export_error(collector, request("forged", service="billing"),
                       bearer("shop") + [("x-berth-app", "billing")])
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    export(collector, request("still mine", service="billing"), bearer("shop"))
    assert [e["message"] for e in collector.events("billing", TOKENS["billing"])] == [
        "billing secret"]
    assert [e["message"] for e in collector.events("shop", TOKENS["shop"])] == [
        "shop secret", "still mine"]


def test_without_tenants_the_app_comes_from_metadata_or_service_name(
    open_collector: Collector,
) -> None:
    c = open_collector
    export(c, request("by service.name", service="guestbook"))
    export(c, request("by metadata", service="guestbook"), [("x-berth-app", "notes")])
    export(c, request("unnamed", service="unknown_service"))
    assert [e["message"] for e in c.events("guestbook")] == ["by service.name"]
    assert [e["message"] for e in c.events("notes")] == ["by metadata"]
    assert [e["message"] for e in c.events("default")] == ["unnamed"]
    err = export_error(c, request("x"), [("x-berth-app", "../etc")])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversize_and_malformed_requests_are_refused_and_serving_goes_on(
    collectors: CollectorFactory,
) -> None:
    c = collectors.start(config='otlp_max_message_bytes = "16KiB"\nmax_message_bytes = "4KiB"\n')
    err = export_error(c, request("x" * 40_000))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert "otlp_max_message_bytes" in err.details()
    # Bytes that are no ExportLogsServiceRequest.
    channel, _ = stub(c)
    raw = channel.unary_unary(EXPORT)
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert "malformed" in info.value.details()
    # A record over max_message_bytes is refused alone, as a partial success.
    reply = export(c, request("small one", "y" * 6000, "small two"))
    assert reply.partial_success.rejected_log_records == 1
    assert "max_message_bytes" in reply.partial_success.error_message
    # The same channel and the other sources keep working.
    raw_ok = raw(request("after").SerializeToString(), timeout=10)
    assert raw_ok == b""
    conn = c.json_conn({"app": "raw-client", "ack": True})
    conn.send({"message": "json still fine"})
    assert conn.wait_ack(1) == []
    conn.close()
    channel.close()
    assert [e["message"] for e in c.events("raw-client")] == [
        "small one", "small two", "after", "json still fine"]
    assert c.metric("log_otlp_invalid_requests_total") == 2
    assert c.metric("log_events_dropped_total", app="raw-client", reason="invalid") == 1


def test_connection_limit_makes_new_connections_wait(collectors: CollectorFactory) -> None:
    c = collectors.start(config="otlp_max_connections = 1\n")
    first, s1 = stub(c)
    s1.Export(request("first"), timeout=10)  # this connection holds the only slot
    second, s2 = stub(c)
    with pytest.raises(grpc.RpcError) as info:
        s2.Export(request("second"), timeout=1)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value
    first.close()
    # The waiting connection is served once the slot is free.
    s2.Export(request("second"), timeout=10)
    second.close()
    assert [e["message"] for e in c.events("raw-client")] == ["first", "second"]
    assert c.metric("log_otlp_connections_total") == 2


def test_rate_limit_partial_success_then_resource_exhausted(collectors: CollectorFactory) -> None:
    c = collectors.start(tenants=tenants_toml({"shop": "log_rate = 2"}), operator=True)
    reply = export(c, request(*(f"m{i}" for i in range(10))), bearer("shop"))
    assert reply.partial_success.rejected_log_records == 8
    assert "rate limit" in reply.partial_success.error_message
    err = export_error(c, request(*(f"n{i}" for i in range(10))), bearer("shop"))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit exceeded for app shop" in err.details()
    assert [e["message"] for e in c.events("shop", TOKENS["shop"])] == ["m0", "m1"]
    assert c.metric("log_events_dropped_total", OPERATOR_TOKEN, app="shop", reason="rate_limit") == 18
    # Another app is not slowed down by shop's limit.
    assert not export(c, request(*(f"b{i}" for i in range(10))), bearer("billing")).HasField(
        "partial_success")


def test_acknowledged_export_survives_kill_9(collectors: CollectorFactory) -> None:
    c = collectors.start(tenants=tenants_toml())
    for i in range(20):
        export(c, request(*(f"batch {i} event {j}" for j in range(50))), bearer("shop"))
    # No pause, no graceful stop: whatever Export answered OK for must be on disk.
    c2 = collectors.restart(c, kill=True)
    got = c2.events("shop", TOKENS["shop"])
    assert len(got) == 1000
    assert got[-1]["message"] == "batch 19 event 49"


def test_disk_full_is_refused_with_a_clear_status(
    collectors: CollectorFactory, small_fs: Path,  # noqa: F811
) -> None:
    c = collectors.start(config='segment_bytes = "64KiB"\n', data_dir=small_fs / "data")
    payload = "x" * 900
    stored = 0
    err = None
    for batch in range(400):
        try:
            export(c, request(*(f"b{batch} e{i} {payload}" for i in range(20)), service="full"))
        except grpc.RpcError as e:
            err = e
            break
        stored += 20
    assert err is not None, "a 1 MiB file system never filled up"
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert "disk full" in err.details()
    assert stored > 100
    assert len(c.events("full")) >= stored
    assert c.metric("log_disk_full_total") >= 1
    # The refused batch left no partial record behind, so it is refused again as a whole;
    # a restart finds nothing torn.
    err2 = export_error(c, request(*(f"again e{i} {payload}" for i in range(20)), service="full"))
    assert "disk full" in err2.details()
    c2 = collectors.restart(c)
    assert c2.metric("log_recovered_truncated_bytes_total") == 0
    assert len(c2.events("full")) >= stored


def test_sigterm_with_an_open_otlp_connection_stops_cleanly(collector: Collector) -> None:
    channel, s = stub(collector)
    s.Export(request("before stop"), metadata=bearer("shop"), timeout=10)
    started = time.monotonic()
    assert collector.process.stop(sig=signal.SIGTERM) == 0, collector.process.describe()
    # The idle HTTP/2 connection got GOAWAY and closed; it did not wait out the 5 s drain.
    assert time.monotonic() - started < 4
    channel.close()
