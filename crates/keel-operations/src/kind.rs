//! Operation kinds: what a user writes to add one, and the registry that finds them by name.
//!
//! A kind is one type implementing [`OperationKind`]: a name, a typed input (validated before
//! anything is stored), a typed output, a default deadline and `async fn run`. The registry
//! erases those types behind JSON so that the executor and the HTTP layer handle every kind alike.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::blocking::BlockingPool;
use crate::model::{OperationError, Progress};

pub trait OperationKind: Send + Sync + 'static {
    /// The `kind` clients submit, e.g. `"sleep"`.
    const NAME: &'static str;
    /// Used when a submission gives no `timeout_ms`.
    const DEFAULT_TIMEOUT: Duration;
    /// How often, and how soon, an operation of this kind runs again after a retryable error
    /// ([`OperationError::retryable`]) or a lost replica.
    const RETRY: RetryPolicy = RetryPolicy::DEFAULT;

    /// Parsed from the submission's `input`, which is always a JSON object (anything else is
    /// refused with 422 before this is parsed): a struct. Use `#[serde(deny_unknown_fields)]`
    /// so that typos are rejected rather than ignored. Its `ToSchema` (`#[derive(ToSchema)]`) puts it in the
    /// OpenAPI document, as the submission's `input` for this kind: state there every limit
    /// `validate` enforces (`#[schema(maximum = …)]`), so that the document promises no more
    /// than the server accepts.
    type Input: DeserializeOwned + ToSchema + Send + 'static;
    /// The operation's `result`; its `ToSchema` documents it.
    type Output: Serialize + ToSchema + Send + 'static;

    /// Checks beyond what the types say (ranges, relations between fields). Runs at submission,
    /// so bad input is a 422 and nothing is created.
    fn validate(&self, input: &Self::Input) -> Result<(), String> {
        let _ = input;
        Ok(())
    }

    /// Does the work. Report progress through `ctx`, and stop when `ctx.cancelled()` fires:
    /// an operation that ignores cancellation is dropped after a grace period anyway.
    fn run(
        &self,
        ctx: OperationContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, OperationError>> + Send;
}

/// How many attempts a kind gets, and the wait before each retry: `backoff`, doubled after every
/// attempt, at most `max_backoff`. A retry is only queued if it can start before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means never retry.
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Three attempts, one second before the second, two before the third.
    pub const DEFAULT: Self =
        Self { max_attempts: 3, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) };

    /// Never run again: for work whose side effects cannot be made idempotent.
    pub const NEVER: Self = Self { max_attempts: 1, ..Self::DEFAULT };

    /// The wait after attempt `attempt` (1-based) failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

/// What a running operation can reach: its id, its cancellation token, progress reporting and
/// the bounded blocking pool for CPU-bound work.
#[derive(Clone)]
pub struct OperationContext {
    id: String,
    owner: Arc<str>,
    attempt: u32,
    cancellation: CancellationToken,
    /// The latest report, picked up by the executor, which records it at most once every
    /// `operations.progress_interval_ms` and with the operation's end.
    progress: watch::Sender<Option<Progress>>,
    blocking: BlockingPool,
}

impl OperationContext {
    pub(crate) fn new(
        id: String,
        owner: Arc<str>,
        attempt: u32,
        cancellation: CancellationToken,
        progress: watch::Sender<Option<Progress>>,
        blocking: BlockingPool,
    ) -> Self {
        Self { id, owner, attempt, cancellation, progress, blocking }
    }

    /// The caller that submitted the operation (an API key's id or a token's subject; `anonymous`
    /// with auth off):
    /// for code that acts on the caller's behalf, or keeps its data apart.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The operation's id: with [`attempt`](Self::attempt), what makes side effects idempotent
    /// (an idempotency key for a payment API, a unique key for a row), since an operation may
    /// run more than once.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports progress (`percent` is capped at 100). Returns at once: the executor records the
    /// latest report at most once every `operations.progress_interval_ms`, and the last one with
    /// the operation's end, so reporting often costs no write per report. If the operation has
    /// ended meanwhile (cancelled, or expired), recording it trips the cancellation token.
    pub fn progress(&self, percent: u8, message: impl Into<String>) {
        let progress = Progress { percent: percent.min(100), message: Some(message.into()) };
        self.progress.send_replace(Some(progress));
    }

    /// Resolves when the operation is cancelled, by a client, its deadline or a shutdown.
    pub async fn cancelled(&self) {
        self.cancellation.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// The token itself, to hand to blocking code that polls `is_cancelled()`.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancellation
    }

    pub fn blocking(&self) -> &BlockingPool {
        &self.blocking
    }
}

/// A kind with its types erased behind JSON.
/// A kind's part of the OpenAPI document: its input and result schemas, and the components they
/// refer to.
pub struct KindSchemas {
    pub name: &'static str,
    pub input: (String, RefOr<Schema>),
    pub output: (String, RefOr<Schema>),
    /// Schemas the input and output refer to, by name.
    pub components: Vec<(String, RefOr<Schema>)>,
    /// `{}` is a valid input, so a submission may leave `input` out.
    pub input_optional: bool,
}

pub(crate) trait ErasedKind: Send + Sync {
    fn schemas(&self) -> KindSchemas;
    fn default_timeout(&self) -> Duration;
    fn retry_policy(&self) -> RetryPolicy;
    fn check(&self, input: &Value) -> Result<(), String>;
    fn run(&self, ctx: OperationContext, input: Value) -> BoxFuture<'static, Result<Value, OperationError>>;
}

/// A kind behind [`ErasedKind`].
struct Typed<K>(Arc<K>);

impl<K: OperationKind> ErasedKind for Typed<K> {
    fn schemas(&self) -> KindSchemas {
        let mut components = Vec::new();
        K::Input::schemas(&mut components);
        K::Output::schemas(&mut components);
        KindSchemas {
            name: K::NAME,
            input: (K::Input::name().into_owned(), K::Input::schema()),
            output: (K::Output::name().into_owned(), K::Output::schema()),
            components,
            input_optional: <K::Input as serde::Deserialize>::deserialize(&Value::Object(serde_json::Map::new()))
                .is_ok(),
        }
    }

    fn default_timeout(&self) -> Duration {
        K::DEFAULT_TIMEOUT
    }

    fn retry_policy(&self) -> RetryPolicy {
        K::RETRY
    }

    fn check(&self, input: &Value) -> Result<(), String> {
        // An input is always a JSON object, as the document says. serde would also read a struct
        // from an array of its fields in order (its sequence form), which no client should
        // come to rely on.
        if !input.is_object() {
            return Err(format!("`input` must be a JSON object, not {}", json_type(input)));
        }
        // `&Value` is itself a deserializer, so checking needs no copy of the input, unless it
        // holds an integral float.
        let normalized = integral_floats_as_integers(input);
        let input = normalized.as_ref().unwrap_or(input);
        let typed = <K::Input as serde::Deserialize>::deserialize(input).map_err(|e| e.to_string())?;
        self.0.validate(&typed)
    }

    fn run(&self, ctx: OperationContext, input: Value) -> BoxFuture<'static, Result<Value, OperationError>> {
        let kind = Arc::clone(&self.0);
        Box::pin(async move {
            let input = integral_floats_as_integers(&input).unwrap_or(input);
            let input: K::Input = serde_json::from_value(input)
                .map_err(|e| OperationError::failed(format!("input no longer parses: {e}")))?;
            let output = kind.run(ctx, input).await?;
            serde_json::to_value(output).map_err(|e| {
                tracing::error!(kind = K::NAME, error = %e, "operation output does not serialise");
                OperationError::internal()
            })
        })
    }
}

/// The JSON type of `value`, as an error names it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `value` with every float that holds a whole number (`4.0`) made an integer, or `None` when it
/// has none. JSON Schema counts `4.0` as an `integer`, so a client, or one generated from the
/// document, may send it for an integer field; serde's integer types refuse it. The input is read
/// as the document promises; the stored input keeps what the client sent.
fn integral_floats_as_integers(value: &Value) -> Option<Value> {
    fn has_any(value: &Value) -> bool {
        match value {
            Value::Number(number) => whole_float_as_integer(number).is_some(),
            Value::Array(items) => items.iter().any(has_any),
            Value::Object(fields) => fields.values().any(has_any),
            _ => false,
        }
    }
    fn convert(value: &Value) -> Value {
        match value {
            Value::Number(number) => whole_float_as_integer(number).map_or_else(|| value.clone(), Value::Number),
            Value::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), convert(v))).collect()),
            _ => value.clone(),
        }
    }
    has_any(value).then(|| convert(value))
}

/// `number` as an integer when it is a float holding a whole number within the integer types'
/// range (`4.0`); `None` otherwise, integers included. JSON Schema's `integer` takes `4.0`.
pub fn whole_float_as_integer(number: &serde_json::Number) -> Option<serde_json::Number> {
    let float = number.as_f64().filter(|_| number.is_f64())?;
    // Exact in an f64, and within the integer types' range: 2^63 and 2^64 themselves are not.
    if float.fract() != 0.0 || !float.is_finite() {
        return None;
    }
    if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
        Some(serde_json::Number::from(float as u64))
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&float) {
        Some(serde_json::Number::from(float as i64))
    } else {
        None
    }
}

/// The kinds this service runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Arc<dyn ErasedKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `kind`. Registering two kinds with one name is a programming error caught at start-up.
    pub fn register<K: OperationKind>(mut self, kind: K) -> Self {
        self.insert(K::NAME, Arc::new(Typed(Arc::new(kind))));
        self
    }

    /// Adds every kind of `other`, as [`register`](Self::register) would one by one.
    pub fn merge(mut self, other: Registry) -> Self {
        for (name, kind) in other.kinds {
            self.insert(name, kind);
        }
        self
    }

    fn insert(&mut self, name: &'static str, kind: Arc<dyn ErasedKind>) {
        let previous = self.kinds.insert(name, kind);
        assert!(previous.is_none(), "operation kind {name:?} is registered twice");
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn ErasedKind>> {
        self.kinds.get(name)
    }

    /// Each registered kind's schemas, sorted by name: the OpenAPI document's submission is one
    /// of them.
    pub fn schemas(&self) -> Vec<KindSchemas> {
        let mut schemas: Vec<_> = self.kinds.values().map(|kind| kind.schemas()).collect();
        schemas.sort_unstable_by_key(|kind| kind.name);
        schemas
    }

    /// Registered kind names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
