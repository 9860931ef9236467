"""An OpAMP agent made with the OpenTelemetry Python OpAMP client
(`opentelemetry-opamp-client`), for tests/tests/opamp.rs.

Usage: opamp_agent.py ENDPOINT TOKEN

It connects over HTTP with the token as `Authorization: Bearer`, reports
its description and effective config (and health, which this client
version does not report by itself: the script adds a ComponentHealth to
the client's own full-state message), heartbeats every half second, then
skips a sequence number as if a message were lost, so that the server
asks for the full state (ReportFullState) and the client's agent loop
sends it again. It then prints one JSON line (its instance uid, how many
full states it sent, any error) and waits for a line on stdin before it
stops, which sends AgentDisconnect.

Meanwhile it takes remote configs: each one the server offers is decoded
with the client's own decoder (JSON content types only) and reported
APPLIED, or FAILED with the decoder's error, by its hash.
"""

import json
import sys
import threading
import time
import uuid

from opentelemetry._opamp.agent import OpAMPAgent
from opentelemetry._opamp.callbacks import OpAMPCallbacks
from opentelemetry._opamp.client import OpAMPClient
from opentelemetry._opamp.exceptions import (
    OpAMPRemoteConfigDecodeException,
    OpAMPRemoteConfigParseException,
)
from opentelemetry._opamp.proto import opamp_pb2

CONFIG = "receivers:\n  hostmetrics:\n    collection_interval: 10s\n"

caps = opamp_pb2.AgentCapabilities
CAPABILITIES = (
    caps.AgentCapabilities_ReportsStatus
    | caps.AgentCapabilities_ReportsEffectiveConfig
    | caps.AgentCapabilities_ReportsHealth
    | caps.AgentCapabilities_ReportsHeartbeat
    | caps.AgentCapabilities_AcceptsRemoteConfig
    | caps.AgentCapabilities_ReportsRemoteConfig
)


def health():
    top = opamp_pb2.ComponentHealth(healthy=True, status="StatusOK")
    top.start_time_unix_nano = time.time_ns()
    receiver = top.component_health_map["receiver:hostmetrics"]
    receiver.healthy = False
    receiver.status = "StatusRecoverableError"
    receiver.last_error = "permission denied reading /proc/1/io"
    return top


class Callbacks(OpAMPCallbacks):
    def __init__(self):
        self.connected = threading.Event()
        self.errors = []

    def on_connect(self, agent, client):
        self.connected.set()

    def on_connect_failed(self, agent, client, error):
        self.errors.append(f"connect failed: {error}")

    def on_error(self, agent, client, error_response):
        self.errors.append(f"server error: {error_response.error_message}")

    def on_message(self, agent, client, message):
        offer = message.remote_config
        if offer is None:
            return
        try:
            dict(client.decode_remote_config(offer))
            status, error = opamp_pb2.RemoteConfigStatuses_APPLIED, ""
        except (OpAMPRemoteConfigDecodeException, OpAMPRemoteConfigParseException) as e:
            status, error = opamp_pb2.RemoteConfigStatuses_FAILED, str(e)
        # None when this hash was already answered (an offer repeated
        # before the server saw the answer): nothing new to send.
        changed = client.update_remote_config_status(offer.config_hash, status, error)
        if changed is not None:
            agent.send(payload=client.build_remote_config_status_response_message(changed))


def main():
    endpoint, token = sys.argv[1], sys.argv[2]
    client = OpAMPClient(
        endpoint=endpoint,
        headers={"Authorization": f"Bearer {token}"},
        timeout_millis=5000,
        agent_identifying_attributes={
            "service.name": "interop.python.agent",
            "service.version": "1.2.3",
        },
        agent_non_identifying_attributes={
            "host.name": "interop-host",
            "deployment.environment": "test",
            "replicas": 3,
            "canary": True,
        },
        capabilities=CAPABILITIES,
    )
    client.update_effective_config({"collector.yaml": CONFIG}, "text/yaml")

    full_states = []
    build_full_state = client.build_full_state_message

    def full_state_with_health():
        message = opamp_pb2.AgentToServer()
        message.ParseFromString(build_full_state())
        message.health.CopyFrom(health())
        full_states.append(message.sequence_num)
        return message.SerializeToString()

    client.build_full_state_message = full_state_with_health

    callbacks = Callbacks()
    agent = OpAMPAgent(interval=0.5, callbacks=callbacks, client=client, max_retries=2)
    agent.start()
    if not callbacks.connected.wait(20):
        print(json.dumps({"error": "never connected", "errors": callbacks.errors}), flush=True)
        agent.stop(timeout=5)
        return 1
    time.sleep(1.5)  # a few heartbeats in order
    client._sequence_num += 1  # a message "lost" on the way
    deadline = time.time() + 20
    while len(full_states) < 2 and time.time() < deadline:
        time.sleep(0.1)
    print(
        json.dumps(
            {
                "uid": str(uuid.UUID(bytes=client._instance_uid)),
                "full_states": len(full_states),
                "errors": callbacks.errors,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()
    agent.stop(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
