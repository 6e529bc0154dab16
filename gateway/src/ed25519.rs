//! Ed25519 through the runtime's WebCrypto: native code in workerd, several times faster than
//! the same arithmetic compiled to wasm. Strictness stays bugbot's: `prepare_discord` rejects a
//! non-canonical `S` and a small-order `R` first, and the configured keys are checked not to be
//! weak, so what passes here is what ed25519-dalek's `verify_strict` passes (see
//! `bugbot_shared::signature`). Imported keys are kept for the isolate's life.

use crate::error::GatewayError;
use crate::task::Settled;
use bugbot_shared::signature::{DiscordKeys, DiscordSigned};
use std::cell::RefCell;
use worker::js_sys::{Array, Promise};
use worker::wasm_bindgen::{self, JsValue, prelude::wasm_bindgen};

#[wasm_bindgen]
extern "C" {
    /// The runtime's `crypto.subtle`, with the two calls made here as typed bindings (one call
    /// each across the boundary; the byte slices are passed as views of wasm memory, which
    /// WebCrypto copies before it returns).
    type Subtle;

    #[wasm_bindgen(thread_local_v2, js_namespace = crypto, js_name = subtle)]
    static SUBTLE: Subtle;

    #[wasm_bindgen(method, catch, js_name = importKey)]
    fn import_key(
        this: &Subtle,
        format: &str,
        key: &[u8],
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn verify(
        this: &Subtle,
        algorithm: &JsValue,
        key: &JsValue,
        signature: &[u8],
        data: &[u8],
    ) -> Result<Promise, JsValue>;
}

thread_local! {
    /// Keys imported into WebCrypto, by their encoding.
    static IMPORTED: RefCell<Vec<([u8; 32], JsValue)>> = const { RefCell::new(Vec::new()) };
    /// The algorithm, by its name (WebCrypto takes the name alone where there are no parameters),
    /// made a JavaScript string once per isolate.
    static ED25519: JsValue = JsValue::from_str("Ed25519");
}

fn js_error(what: &str) -> impl Fn(JsValue) -> GatewayError + '_ {
    move |e| GatewayError::Unavailable(format!("WebCrypto {what}: {e:?}"))
}

async fn imported(raw: &[u8; 32]) -> Result<JsValue, GatewayError> {
    let known = IMPORTED.with(|k| {
        k.borrow()
            .iter()
            .find(|(bytes, _)| bytes == raw)
            .map(|(_, key)| key.clone())
    });
    if let Some(key) = known {
        return Ok(key);
    }
    let usages = Array::of1(&JsValue::from_str("verify"));
    let promise = ED25519
        .with(|algorithm| SUBTLE.with(|s| s.import_key("raw", raw, algorithm, false, &usages)))
        .map_err(js_error("importKey"))?;
    let key = Settled::new(&promise)
        .await
        .map_err(js_error("importKey"))?;
    IMPORTED.with(|k| k.borrow_mut().push((*raw, key.clone())));
    Ok(key)
}

/// Whether `signed` verifies under any of `keys` (each is tried, so the time does not say which).
pub async fn verify_any(keys: &DiscordKeys, signed: &DiscordSigned) -> Result<bool, GatewayError> {
    let mut matched = false;
    for raw in keys.raw() {
        let key = imported(&raw).await?;
        let promise = ED25519
            .with(|algorithm| {
                SUBTLE.with(|s| s.verify(algorithm, &key, &signed.signature, &signed.message))
            })
            .map_err(js_error("verify"))?;
        let ok = Settled::new(&promise).await.map_err(js_error("verify"))?;
        matched |= ok.as_bool().unwrap_or(false);
    }
    Ok(matched)
}
