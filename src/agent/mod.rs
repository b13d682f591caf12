//! The node agent: how knetdoctor reaches every node of a real cluster with
//! nothing but the API server in between. Requests are custom resources in
//! the agent's namespace, answers their status ([`api`]); large bodies are
//! compressed and split ([`payload`]); the agent ([`serve`]) answers only
//! its own node's requests and opens no port; clients reach a node through
//! [`remote::AgentNode`], one more [`crate::access::NodeAccess`]; a repair
//! sent to an agent is bound to the node it was planned on ([`repair`]).
//! [`manifest`] prints what installs it.

pub mod api;
pub mod batch;
pub mod manifest;
pub mod payload;
pub mod probe;
pub mod publish;
pub mod remote;
pub mod repair;
pub mod serve;
pub mod wire;
