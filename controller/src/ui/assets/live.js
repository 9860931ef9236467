// @ts-check
// Live updates: GET /api/v1/events (server-sent events) read with fetch(),
// since an EventSource cannot send the Authorization header. On a lost
// connection (a controller restart) it retries with backoff and says so;
// once back, the page refetches everything.

import { token } from "/ui/api.js";
import { sleep } from "/ui/dom.js";

/** No byte for this long (keep-alives come every 15 s): the link is dead. */
const SILENCE_MS = 40000;

export class Live {
  /**
   * onChange(): something changed; onState(state, info): "connecting",
   * "live" (info.recovered after an outage), "down" (info.retryIn ms),
   * "unauthorized".
   * @param {{ onChange: () => void, onState: (state: "connecting" | "live" | "down" | "unauthorized", info: { recovered?: boolean, retryIn?: number }) => void }} handlers
   */
  constructor({ onChange, onState }) {
    this.onChange = onChange;
    this.onState = onState;
    this.stopped = true;
    /** @type {AbortController | null} */
    this.abort = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    let delay = 1000;
    let outage = false;
    this.onState("connecting", {});
    while (!this.stopped) {
      const ctrl = new AbortController();
      this.abort = ctrl;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let watchdog;
      const kick = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => ctrl.abort(), SILENCE_MS);
      };
      try {
        const r = await fetch("/api/v1/events", {
          headers: { Authorization: "Bearer " + (token() || ""), Accept: "text/event-stream" },
          cache: "no-store",
          signal: ctrl.signal,
        });
        if (r.status === 401) {
          this.stopped = true;
          this.onState("unauthorized", {});
          return;
        }
        if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        kick();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          kick();
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = parse(block);
            if (event === "ready") {
              delay = 1000;
              this.onState("live", { recovered: outage });
              outage = false;
            } else if (event === "change") {
              this.onChange();
            }
          }
        }
      } catch {
        // Aborted, refused or cut: retried below.
      } finally {
        clearTimeout(watchdog);
      }
      if (this.stopped) return;
      outage = true;
      this.onState("down", { retryIn: delay });
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }
}

/**
 * The event name of one SSE block (comments have none).
 * @param {string} block
 */
function parse(block) {
  let name = null;
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
  }
  return name;
}
