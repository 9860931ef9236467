// An OpAMP agent made with Elastic's Node.js OpAMP client
// (`@elastic/opamp-client-node`, pinned in package.json), for
// tests/tests/opamp.rs. Install it with `npm ci --prefix tests/scripts`.
//
// Usage: node opamp_agent.mjs ENDPOINT TOKEN
//
// It connects over HTTP with the token as `Authorization: Bearer`, reports
// its description (identifying and non-identifying attributes) and a remote
// config status, and heartbeats every half second. This client has no API
// for health or effective config (its capabilities are ReportsStatus and
// ReportsHeartbeat, always on, plus AcceptsRemoteConfig and
// ReportsRemoteConfig on request; any other is refused), so it reports
// neither. When its first exchange succeeded it prints one JSON line (its
// instance uid, its capabilities, any error); a failed first exchange
// prints the error and exits 1. It stops on SIGINT, SIGTERM, a line on
// stdin or stdin's end: the client's shutdown sends no AgentDisconnect, it
// only stops polling.
//
// A remote config the server offers (through the client's `onMessage`) is
// reported APPLIED when every file is JSON, else FAILED with the parse
// error, by the offer's hash.

import {createHash} from 'node:crypto';
import {subscribe} from 'node:diagnostics_channel';
import process from 'node:process';

import opamp from '@elastic/opamp-client-node';

const {
    AgentCapabilities,
    RemoteConfigStatuses,
    DIAG_CH_SEND_FAIL,
    DIAG_CH_SEND_SUCCESS,
    createOpAMPClient,
} = opamp;

const [endpoint, token] = process.argv.slice(2);
if (!endpoint || !token) {
    console.error('usage: node opamp_agent.mjs ENDPOINT TOKEN');
    process.exit(2);
}

// The config this agent says it applied, by its SHA-256.
const CONFIG = 'receivers:\n  hostmetrics:\n    collection_interval: 10s\n';

const capabilities =
    BigInt(AgentCapabilities.AgentCapabilities_AcceptsRemoteConfig) |
    BigInt(AgentCapabilities.AgentCapabilities_ReportsRemoteConfig);

const client = createOpAMPClient({
    endpoint,
    headers: {Authorization: `Bearer ${token}`},
    capabilities,
    heartbeatIntervalSeconds: 0.5,
    headersTimeout: 5000,
    bodyTimeout: 5000,
    diagEnabled: true,
    onMessage: ({remoteConfig}) => {
        if (!remoteConfig) {
            return;
        }
        const files = Object.entries(remoteConfig.config?.configMap ?? {});
        const problems = [];
        for (const [name, file] of files) {
            try {
                JSON.parse(Buffer.from(file.body).toString('utf8'));
            } catch (err) {
                problems.push(`${name || '(the only file)'}: ${err.message}`);
            }
        }
        // The client sends only when the status changed.
        client.setRemoteConfigStatus({
            lastRemoteConfigHash: remoteConfig.configHash,
            status:
                problems.length === 0
                    ? RemoteConfigStatuses.RemoteConfigStatuses_APPLIED
                    : RemoteConfigStatuses.RemoteConfigStatuses_FAILED,
            errorMessage: problems.join('; '),
        });
    },
});
client.setAgentDescription({
    identifyingAttributes: {
        'service.name': 'interop.node.agent',
        'service.version': '4.5.6',
    },
    nonIdentifyingAttributes: {
        'host.name': 'interop-node-host',
        'deployment.environment': 'test',
        replicas: 3n, // an int
        ratio: 0.5, // a double
        canary: true,
    },
});

function uuid(bytes) {
    const hex = Buffer.from(bytes).toString('hex');
    return [
        hex.slice(0, 8),
        hex.slice(8, 12),
        hex.slice(12, 16),
        hex.slice(16, 20),
        hex.slice(20),
    ].join('-');
}

const errors = [];
let reported = false;
function report(line) {
    if (!reported) {
        reported = true;
        console.log(JSON.stringify(line));
    }
}

subscribe(DIAG_CH_SEND_FAIL, ({err}) => {
    errors.push(String(err?.message ?? err));
    if (!reported) {
        report({error: 'the first exchange failed', errors});
        stop(1);
    }
});
subscribe(DIAG_CH_SEND_SUCCESS, ({a2s, s2a}) => {
    if (s2a?.errorResponse) {
        errors.push(`server error: ${s2a.errorResponse.errorMessage}`);
    }
    if (!reported) {
        clearTimeout(deadline);
        report({
            uid: uuid(client.getInstanceUid()),
            capabilities: a2s.capabilities.toString(),
            errors,
        });
    }
});

client.start();
// Called before the first send is scheduled, so the first message carries
// the status along with the full state.
client.setRemoteConfigStatus({
    status: RemoteConfigStatuses.RemoteConfigStatuses_APPLIED,
    lastRemoteConfigHash: createHash('sha256').update(CONFIG).digest(),
});

const deadline = setTimeout(() => {
    report({error: 'no answer within 20 s', errors});
    stop(1);
}, 20_000);

let stopping = false;
async function stop(code) {
    if (stopping) {
        return;
    }
    stopping = true;
    clearTimeout(deadline);
    try {
        await client.shutdown();
    } finally {
        process.exit(code);
    }
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
process.stdin.on('data', () => stop(0));
process.stdin.on('end', () => stop(0));
process.stdin.resume();
