// The gateway Worker's entry module: what worker-build generated (build/index.js), with two
// changes, and nothing decided here:
//
// - The fetch handler is a plain module handler that calls the Rust `fetch` directly. worker-build
//   0.8.7 exports a WorkerEntrypoint class behind a Proxy (its recovery after a wasm trap), which
//   the runtime constructs for every request, and whose `fetch` is wrapped in a second, async
//   Proxy: about 0.03 ms of CPU per request, a tenth of a signed PING's (docs/benchmarks.md). The
//   recovery is kept: a trap marks the module as worker-build's wrapper does, and the next
//   request goes through that wrapper, which starts a fresh instance.
// - The admission ledger's class is declared here so that it extends `DurableObject`. Workers RPC
//   is served only by such classes, and worker-build exports its Durable Object classes as proxies
//   of plain classes. Each method hands over to the Rust object (src/ledger.rs).
import { DurableObject } from "cloudflare:workers";
import gateway, { AdmissionLedger as RustAdmissionLedger, DiscordGateway } from "../build/index.js";

// The generated class's own `fetch` (the Proxy forwards `prototype` to it): it calls the wasm
// `fetch(request, this.env, this.ctx)`.
const rustFetch = gateway.prototype.fetch;
const initState = globalThis.__worker_init_state;

export default {
  // Not async: the Rust handler gives its answer itself when it needs no I/O, and otherwise a
  // promise, which the runtime awaits (an `await` here would add a promise and a reaction).
  fetch(request, env, ctx) {
    if (initState.criticalError) {
      // A trap poisoned the instance: worker-build's wrapper re-instantiates the module.
      return new gateway(ctx, env).fetch(request);
    }
    try {
      return rustFetch.call({ env, ctx }, request);
    } catch (error) {
      if (error instanceof WebAssembly.RuntimeError) {
        console.error("Critical", error);
        initState.criticalError = true;
      }
      throw error;
    }
  },
};
export { DiscordGateway };

export class AdmissionLedger extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.ledger = new RustAdmissionLedger(ctx, env);
  }

  fetch(request) {
    return this.ledger.fetch(request);
  }

  alarm() {
    return this.ledger.alarm();
  }

  // RPC (see the methods' docs in src/ledger.rs).
  admit(id, rateKey, jobsPerHour, message, messageBytes, record) {
    const answer = this.ledger.admit(id, rateKey, jobsPerHour, message, messageBytes, record);
    // A promise when the admission set the alarm: if that failed, the next admission sets it.
    return typeof answer === "string"
      ? answer
      : answer.catch((error) => {
          this.ledger.alarmNotSet();
          throw error;
        });
  }

  job(id) {
    return this.ledger.job(id);
  }

  recentJobs(limit) {
    return this.ledger.recentJobs(limit);
  }

  setAside(limit) {
    return this.ledger.setAside(limit);
  }

  // Local development only (the gateway's dev routes check BUGBOT_DEV_ENDPOINTS).
  devQueueOutage(ms) {
    return this.ledger.devQueueOutage(ms);
  }

  devLedgerOutage(ms) {
    return this.ledger.devLedgerOutage(ms);
  }

  devPoison(id) {
    return this.ledger.devPoison(id);
  }
}
