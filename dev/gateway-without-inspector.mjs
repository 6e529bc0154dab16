// Runs the gateway Worker as `wrangler dev` does (wrangler's own dev server, proxy and workerd), but
// without the DevTools inspector that `wrangler dev` always attaches. Used by `scripts/bench` (see the
// docs/benchmarks.md): the inspector relays an event through Node for every console line and
// every subrequest, which measures the debugger rather than the Worker.
// The benchmark also runs its JavaScript twin of the gateway this way (the optional config).
//   node dev/gateway-without-inspector.mjs <env-file> <port> <persist-dir> [<config>]
//
// Once ready it prints `runtime socket: http://127.0.0.1:<port>`: the workerd that runs the Workers
// answers there too, without wrangler's dev proxy in front (the benchmark measures the Workers
// through it; in production no such proxy stands between the edge and the Worker).
import { unstable_DevEnv } from "wrangler";

const [envFile, port, persist, config] = process.argv.slice(2);
if (!envFile || !port || !persist) {
  console.error("usage: gateway-without-inspector.mjs <env-file> <port> <persist-dir> [<config>]");
  process.exit(2);
}
const devEnv = new unstable_DevEnv();
// The runtime's own address reaches wrangler's proxy in the `reloadComplete` event only.
let runtime;
const onReloadComplete = devEnv.proxy.onReloadComplete.bind(devEnv.proxy);
devEnv.proxy.onReloadComplete = (event) => {
  const { protocol, hostname, port } = event.proxyData.userWorkerUrl;
  runtime = `${protocol}//${hostname}:${port}`;
  return onReloadComplete(event);
};
const worker = await devEnv.startWorker({
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
for (let waited = 0; runtime === undefined && waited < 30_000; waited += 50) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(`runtime socket: ${runtime ?? "unknown"}`);
const stop = async () => {
  await worker.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
