// The JavaScript twin of bugbot's gateway, for `scripts/bench --only gateway`: the Worker a team
// would write by hand for the same job, so that the benchmark can say whether the Rust-to-WASM
// gateway is at least as fast and as cheap. It does the same work for the two scenarios measured:
//
// - a signed Discord PING: Ed25519 over `timestamp || body` with WebCrypto, then `{"type": 1}`;
// - a signed `/bugbot fix`: the same check, JSON parse, guild and role checks, then one SQLite
//   Durable Object that dedupes by interaction id, counts the user's sliding hour, stores the job
//   row with its queue message and answers once committed (the output gate), and an alarm that
//   drains that outbox to the queue moments later; the answer is a deferred response.
//
// Benchmark-only: never deployed, not part of bugbot.
import { DurableObject } from "cloudflare:workers";

const HOUR_MS = 3_600_000;
const encoder = new TextEncoder();
let publicKey; // the imported key, once per isolate

function hexBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

const json = (status, value) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
const ephemeral = (content) => json(200, { type: 4, data: { content, flags: 64 } });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return json(200, { status: "ok" });
    if (url.pathname !== "/discord/interactions") return json(404, { error: "not found" });
    if (request.method !== "POST") return json(405, { error: "method not allowed" });
    const length = Number(request.headers.get("content-length") ?? 0);
    if (length > 1 << 20) return json(413, { error: "request body is larger than 1 MiB" });
    const body = new Uint8Array(await request.arrayBuffer());
    const signature = hexBytes(request.headers.get("x-signature-ed25519"));
    const timestamp = request.headers.get("x-signature-timestamp");
    if (!signature || signature.length !== 64 || !timestamp) {
      return json(401, { error: "invalid request signature or token" });
    }
    publicKey ??= crypto.subtle.importKey(
      "raw",
      hexBytes(env.DISCORD_PUBLIC_KEY),
      { name: "Ed25519" },
      false,
      ["verify"],
    );
    const stamp = encoder.encode(timestamp);
    const message = new Uint8Array(stamp.length + body.length);
    message.set(stamp);
    message.set(body, stamp.length);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, await publicKey, signature, message);
    if (!ok) return json(401, { error: "invalid request signature or token" });

    let interaction;
    try {
      interaction = JSON.parse(new TextDecoder().decode(body));
    } catch {
      return json(400, { error: "not a valid interaction" });
    }
    if (interaction.type === 1) return json(200, { type: 1 });
    if (interaction.type !== 2) return ephemeral("bugbot has no forms.");
    const member = interaction.member;
    const guilds = (env.DISCORD_GUILDS ?? "").split(",").map((s) => s.trim());
    if (!interaction.guild_id || !member || !guilds.includes(interaction.guild_id)) {
      return ephemeral("bugbot is not set up for this server or repository.");
    }
    const sub = interaction.data?.options?.find((o) => o.type === 1);
    if (interaction.data?.name !== "bugbot" || !sub) return ephemeral("bugbot doesn't know this command.");
    const fixRoles = (env.DISCORD_FIX_ROLES ?? "").split(",").map((s) => s.trim());
    if (sub.name === "fix" && !member.roles.some((r) => fixRoles.includes(r))) {
      return ephemeral("Sorry, you don't have a role that may run `fix` here.");
    }
    const details = sub.options?.find((o) => o.name === "details")?.value ?? "";
    const job = {
      v: 1,
      id: `dc-${interaction.id}`,
      command: sub.name,
      requester: { id: member.user.id, name: member.user.global_name ?? member.user.username },
      source: {
        kind: "discord",
        guild_id: interaction.guild_id,
        channel_id: interaction.channel_id,
        interaction_id: interaction.id,
        interaction_token: interaction.token,
        application_id: interaction.application_id,
      },
      report: { text: details, truncated: false },
      enqueued_at_ms: Date.now(),
    };
    const ledger = env.LEDGER.get(env.LEDGER.idFromName("ledger"));
    const outcome = await ledger.admit(job.id, `discord:${member.user.id}`, JSON.stringify(job));
    if (outcome === "limited") {
      return ephemeral("You've started too many bugbot jobs in the last hour. Please try again later.");
    }
    return json(200, { type: 5 });
  },
};

export class Ledger extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY, user TEXT NOT NULL, at INTEGER NOT NULL, message TEXT)`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user, at)");
    this.limit = Number(env.JOBS_PER_USER_PER_HOUR ?? 20);
  }

  // Dedupe, the user's sliding hour, the row with its message; answered once committed.
  async admit(id, user, message) {
    if (this.sql.exec("SELECT 1 FROM jobs WHERE id = ?", id).toArray().length > 0) return "duplicate";
    const since = Date.now() - HOUR_MS;
    const { n } = this.sql.exec("SELECT COUNT(*) AS n FROM jobs WHERE user = ? AND at > ?", user, since).one();
    if (n >= this.limit) return "limited";
    this.sql.exec("INSERT INTO jobs (id, user, at, message) VALUES (?, ?, ?, ?)", id, user, Date.now(), message);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + 50);
    return "admitted";
  }

  // Drains the outbox to the queue, 100 at a time.
  async alarm() {
    const rows = this.sql.exec("SELECT id, message FROM jobs WHERE message IS NOT NULL LIMIT 100").toArray();
    if (rows.length === 0) return;
    await this.env.JOBS.sendBatch(rows.map((r) => ({ body: JSON.parse(r.message) })));
    for (const r of rows) this.sql.exec("UPDATE jobs SET message = NULL WHERE id = ?", r.id);
    if (rows.length === 100) await this.ctx.storage.setAlarm(Date.now() + 50);
  }
}
