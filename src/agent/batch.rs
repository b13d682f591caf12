//! One client's requests to several agents at once: created under one
//! batch label, followed by one watch on that label, answered in their
//! status, deleted by one delete-collection. A read is one round (create,
//! wait until answered); a probe is three (watch, send, stop), on the same
//! batch and watch.

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::api::{Answer, NODE_LABEL, Phase};
use super::remote::HasAnswer;
use super::wire::{Wire, refused};
use crate::error::{Error, Result};

/// The label grouping one client's requests, so one watch and one
/// delete-collection cover them all.
const BATCH_LABEL: &str = "knetdoctor.dev/batch";

/// Requests created at once by one client: the API server's in-flight
/// limit (400 by default) is shared with everyone else.
const CREATES_IN_FLIGHT: usize = 64;

/// A request kind a client sends.
pub trait Request: super::api::Kind + HasAnswer {}

impl<K: super::api::Kind + HasAnswer> Request for K {}

type Events<K> = Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<K>>> + Send>>;

/// One created request: its node and name, or why it was not created.
pub struct Sent {
    pub node: String,
    created: Result<String>,
    /// How long it was waited for (for the message when it was not answered).
    waited: Duration,
}

impl Sent {
    /// The request's object name, when it was created.
    pub fn name(&self) -> Option<&str> {
        self.created.as_ref().ok().map(String::as_str)
    }
}

/// A batch of requests of kind `K`.
pub struct Batch<K: Request> {
    wire: Wire,
    api: Api<K>,
    label: String,
    verb: String,
    events: Option<Events<K>>,
    /// The latest answer of each request, by name.
    answers: BTreeMap<String, Answer>,
    /// Requests an agent has taken (it wrote a status).
    taken: HashSet<String>,
    /// How long an agent may take to take a request.
    take_timeout: Duration,
}

/// Whether an answer is final.
pub fn answered(a: &Answer) -> bool {
    matches!(a.phase, Some(Phase::Done | Phase::Failed))
}

impl<K: Request> Batch<K> {
    pub fn new(wire: &Wire, verb: &str, take_timeout: Duration) -> Batch<K> {
        Batch {
            wire: wire.clone(),
            api: wire.api::<K>(),
            label: unique_name("b"),
            verb: verb.to_string(),
            events: None,
            answers: BTreeMap::new(),
            taken: HashSet::new(),
            take_timeout,
        }
    }

    /// Creates `requests` (a request without a name gets one generated
    /// from the verb and its node), in order, at most
    /// [`CREATES_IN_FLIGHT`] at once.
    pub async fn create(&mut self, requests: Vec<K>) -> Vec<Sent> {
        let verb = self.verb.clone();
        let created: Vec<Sent> = futures::stream::iter(requests.into_iter().map(|mut r| {
            let api = self.api.clone();
            let node = r.node().to_string();
            let meta: &mut ObjectMeta = r.meta_mut();
            if meta.name.as_deref().is_none_or(str::is_empty) {
                meta.name = None;
                meta.generate_name = Some(format!("{verb}-{node}-"));
            }
            meta.labels = Some(
                [
                    (NODE_LABEL.to_string(), node.clone()),
                    (BATCH_LABEL.to_string(), self.label.clone()),
                ]
                .into(),
            );
            let verb = verb.clone();
            async move {
                let created = api
                    .create(&PostParams::default(), &r)
                    .await
                    .map(|c| c.name_any())
                    .map_err(|e| refused(e, &format!("ask the agent on {node} ({verb})")));
                Sent {
                    node,
                    created,
                    waited: Duration::ZERO,
                }
            }
        }))
        .buffered(CREATES_IN_FLIGHT)
        .collect()
        .await;
        if self.events.is_none() && created.iter().any(|s| s.created.is_ok()) {
            self.events = Some(Box::pin(watcher(
                self.api.clone(),
                watcher::Config::default().labels(&format!("{BATCH_LABEL}={}", self.label)),
            )));
        }
        created
    }

    /// Waits until every request of `sent` is `until` (or answered), or
    /// `timeout` passes; past the take timeout, only requests an agent has
    /// taken are waited for (an agent that took none has stopped).
    pub async fn wait(&mut self, sent: &mut [Sent], until: fn(&Answer) -> bool, timeout: Duration) {
        for s in sent.iter_mut() {
            s.waited = timeout;
        }
        let names: Vec<String> = sent
            .iter()
            .filter_map(|s| s.name().map(str::to_string))
            .collect();
        let Some(events) = self.events.as_mut() else {
            return;
        };
        let start = tokio::time::Instant::now();
        let (take_by, done_by) = (start + self.take_timeout, start + timeout);
        loop {
            let now = tokio::time::Instant::now();
            let pending = names.iter().filter(|n| {
                !self
                    .answers
                    .get(*n)
                    .is_some_and(|a| until(a) || answered(a))
            });
            let worth = if now >= take_by {
                pending.filter(|n| self.taken.contains(*n)).count()
            } else {
                pending.count()
            };
            if worth == 0 || now >= done_by {
                return;
            }
            let wake = if now < take_by { take_by } else { done_by };
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r))) => {
                        if let Some(a) = r.answer() {
                            self.taken.insert(r.name_any());
                            self.answers.insert(r.name_any(), a.clone());
                        }
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The answer to `sent`: its body, the agent's error, or why there is
    /// none.
    pub async fn body(&self, sent: Sent) -> Result<Vec<u8>> {
        let name = match &sent.created {
            Err(_) => return sent.created.map(|_| Vec::new()),
            Ok(n) => n,
        };
        let node = &sent.node;
        let hint = || {
            Some(format!(
                "is its pod running? `kubectl -n {} get nodeagents,pods -o wide`",
                self.wire.namespace
            ))
        };
        match self.answers.get(name) {
            Some(Answer {
                phase: Some(Phase::Done),
                payload: Some(p),
                ..
            }) => self.wire.body(name, p).await,
            Some(Answer {
                phase: Some(Phase::Failed),
                error: Some(e),
                ..
            }) => Err(e.clone().into_error(node)),
            Some(a) if answered(a) => Err(Error::internal(format!(
                "the agent on {node} answered without a body"
            ))),
            _ if !self.taken.contains(name) => Err(Error::env(
                format!(
                    "the agent on {node} did not take the request within {} s: it has stopped since it last renewed",
                    self.take_timeout.as_secs()
                ),
                hint(),
            )),
            _ => Err(Error::env(
                format!(
                    "the agent on {node} did not answer within {} s",
                    sent.waited.as_secs()
                ),
                hint(),
            )),
        }
    }

    /// Whether the agent answering `sent` has reached `until`.
    pub fn is(&self, sent: &Sent, until: fn(&Answer) -> bool) -> bool {
        sent.name()
            .and_then(|n| self.answers.get(n))
            .is_some_and(until)
    }

    /// The typed handle the batch's requests are created through.
    pub fn api(&self) -> &Api<K> {
        &self.api
    }

    /// Deletes every request of the batch (one request for all; parts go
    /// with their requests by owner references, or with the agent's
    /// clean-up).
    pub async fn delete(self) {
        if self.events.is_some() {
            let _ = self
                .api
                .delete_collection(
                    &DeleteParams::background(),
                    &ListParams::default().labels(&format!("{BATCH_LABEL}={}", self.label)),
                )
                .await;
        }
    }
}

/// `prefix-` and 10 hex digits from the clock and the process: unique
/// enough among one namespace's requests, and a valid object name.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mix = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{prefix}-{:010x}", mix & 0xff_ffff_ffff)
}
