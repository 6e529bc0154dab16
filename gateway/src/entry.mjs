// The gateway Worker's entry module: what worker-build generated (build/index.js), with the
// admission ledger's class declared here so that it extends `DurableObject`. Workers RPC is served
// only by such classes, and worker-build 0.8.7 exports its Durable Object classes as proxies of
// plain classes. Each method hands over to the Rust object (src/ledger.rs); nothing is decided here.
import { DurableObject } from "cloudflare:workers";
import gateway, { AdmissionLedger as RustAdmissionLedger, DiscordGateway } from "../build/index.js";

export default gateway;
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
  admitBatch(batch) {
    return this.ledger.admitBatch(batch);
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
