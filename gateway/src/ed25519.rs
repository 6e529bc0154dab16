//! Ed25519 through the runtime's WebCrypto: native code in workerd, several times faster than
//! the same arithmetic compiled to wasm. Strictness stays bugbot's: `prepare_discord` rejects a
//! non-canonical `S` and a small-order `R` first, and the configured keys are checked not to be
//! weak, so what passes here is what ed25519-dalek's `verify_strict` passes (see
//! `bugbot_shared::signature`). Imported keys are kept for the isolate's life.

use crate::error::GatewayError;
use bugbot_shared::signature::{DiscordKeys, DiscordSigned};
use std::cell::RefCell;
use worker::js_sys::{self, Array, Function, Object, Promise, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

thread_local! {
    /// Keys imported into WebCrypto, by their encoding.
    static IMPORTED: RefCell<Vec<([u8; 32], JsValue)>> = const { RefCell::new(Vec::new()) };
    /// `crypto.subtle`, its `verify`, and the algorithm, looked up once per isolate.
    static WEBCRYPTO: RefCell<Option<(JsValue, Function, JsValue)>> = const { RefCell::new(None) };
}

fn webcrypto() -> Result<(JsValue, Function, JsValue), GatewayError> {
    if let Some(known) = WEBCRYPTO.with(|w| w.borrow().clone()) {
        return Ok(known);
    }
    let subtle = subtle()?;
    let verify = method(&subtle, "verify")?;
    let found = (subtle, verify, JsValue::from(algorithm()?));
    WEBCRYPTO.with(|w| *w.borrow_mut() = Some(found.clone()));
    Ok(found)
}

fn js_error(what: &str) -> impl Fn(JsValue) -> GatewayError + '_ {
    move |e| GatewayError::Unavailable(format!("WebCrypto {what}: {e:?}"))
}

fn subtle() -> Result<JsValue, GatewayError> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
        .map_err(js_error("crypto"))?;
    Reflect::get(&crypto, &JsValue::from_str("subtle")).map_err(js_error("subtle"))
}

fn method(target: &JsValue, name: &str) -> Result<Function, GatewayError> {
    Reflect::get(target, &JsValue::from_str(name))
        .and_then(JsCast::dyn_into)
        .map_err(js_error(name))
}

fn algorithm() -> Result<Object, GatewayError> {
    let algorithm = Object::new();
    Reflect::set(
        &algorithm,
        &JsValue::from_str("name"),
        &JsValue::from_str("Ed25519"),
    )
    .map_err(js_error("algorithm"))?;
    Ok(algorithm)
}

async fn imported(subtle: &JsValue, raw: &[u8; 32]) -> Result<JsValue, GatewayError> {
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
    let args = Array::of5(
        &JsValue::from_str("raw"),
        &Uint8Array::from(&raw[..]),
        &JsValue::from(algorithm()?),
        &JsValue::FALSE,
        &usages,
    );
    let promise: Promise = Reflect::apply(&method(subtle, "importKey")?, subtle, &args)
        .and_then(JsCast::dyn_into)
        .map_err(js_error("importKey"))?;
    let key = JsFuture::from(promise)
        .await
        .map_err(js_error("importKey"))?;
    IMPORTED.with(|k| k.borrow_mut().push((*raw, key.clone())));
    Ok(key)
}

/// Whether `signed` verifies under any of `keys` (each is tried, so the time does not say which).
pub async fn verify_any(keys: &DiscordKeys, signed: &DiscordSigned) -> Result<bool, GatewayError> {
    let (subtle, verify, algorithm) = webcrypto()?;
    let signature = Uint8Array::from(&signed.signature[..]);
    let message = Uint8Array::from(&signed.message[..]);
    let mut matched = false;
    for raw in keys.raw() {
        let key = imported(&subtle, &raw).await?;
        let args = Array::of4(&algorithm, &key, &signature, &message);
        let promise: Promise = Reflect::apply(&verify, &subtle, &args)
            .and_then(JsCast::dyn_into)
            .map_err(js_error("verify"))?;
        let ok = JsFuture::from(promise).await.map_err(js_error("verify"))?;
        matched |= ok.as_bool().unwrap_or(false);
    }
    Ok(matched)
}
