// Runs the gateway Worker as `wrangler dev` does (wrangler's own dev server, proxy and workerd), but
// without the DevTools inspector that `wrangler dev` always attaches. Used by `scripts/bench` (see the
// docs/benchmarks.md): the inspector relays an event through Node for every console line and
// every subrequest, which measures the debugger rather than the Worker.
// The benchmark also runs its JavaScript twin of the gateway this way (the optional config).
//   node dev/gateway-without-inspector.mjs <env-file> <port> <persist-dir> [<config>]
import { unstable_startWorker } from "wrangler";

const [envFile, port, persist, config] = process.argv.slice(2);
if (!envFile || !port || !persist) {
  console.error("usage: gateway-without-inspector.mjs <env-file> <port> <persist-dir> [<config>]");
  process.exit(2);
}
const worker = await unstable_startWorker({
  config: config ?? "gateway/wrangler.toml",
  envFiles: [envFile],
  // The gateway runs alone here: its binding to the consumer (admin reads, dev routes) points at
  // the gateway itself, which the benchmark never calls through it.
  bindings: config ? {} : { CONSUMER: { type: "service", service: "bugbot-gateway" } },
  dev: {
    server: { hostname: "127.0.0.1", port: Number(port) },
    inspector: false,
    persist,
    watch: false,
  },
});
await worker.ready;
console.log(`${config ?? "gateway"} ready on http://127.0.0.1:${port} (inspector off)`);
const stop = async () => {
  await worker.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
