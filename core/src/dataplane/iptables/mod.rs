//! iptables as data: a ruleset (tables, chains, rule specs) as
//! `iptables-restore` takes it and `iptables-save` prints it, a typed view
//! of one rule, and the `iptables-save` parser.

pub mod rule_spec;
pub mod ruleset;
pub mod save;

pub use rule_spec::RuleSpec;
pub use ruleset::{Chain, Ruleset, Table, builtin_chains};
