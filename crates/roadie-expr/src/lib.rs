//! Layer `expr` of roadie: the small languages inside an Argo Workflow.
//!
//! Argo workflows carry several little languages in their strings, and each behaves in its own
//! (sometimes surprising) way. This crate implements them as pure functions, with no IO, no
//! clock and no async, so the engine can call them from its state machine and tests can pin
//! every quirk down:
//!
//! - `{{name}}` and `{{= expr }}` tags: [`substitute`], [`references`], [`expression_references`].
//! - `when:` conditions, evaluated the way Argo's govaluate-based evaluator does after
//!   substitution (bare words are strings, so `heads == heads` is true): [`eval_when`].
//! - DAG `depends:` (enhanced depends logic) and plain `dependencies:` lists: [`Depends`].
//! - Loops: [`expand_sequence`] (`withSequence`), [`parse_items`] (`withParam`),
//!   [`item_to_string`] and [`item_variables`] (what `{{item}}` means).
//! - expr-lang expressions (`retryStrategy.expression`, `{{= }}`, hooks) with Argo's function
//!   set (`asInt`, `jsonpath`, `toJson`, `sprig.*`): [`eval_expr`], [`eval_expr_bool`],
//!   [`scope_env`].
//! - Durations as Argo writes them: [`parse_duration`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use roadie_expr::{Unresolved, eval_when, parse_depends, substitute, DependCondition};
//!
//! let mut scope = BTreeMap::new();
//! scope.insert("steps.flip-coin.outputs.result".to_string(), "heads".to_string());
//! let when = substitute("{{steps.flip-coin.outputs.result}} == heads", &scope, Unresolved::Error)?;
//! assert!(eval_when(&when)?);
//! let tag = substitute("{{= steps['flip-coin'].outputs.result == 'heads' }}", &scope, Unresolved::Error)?;
//! assert_eq!(tag, "true");
//!
//! let depends = parse_depends("A && (B.Failed || C)")?;
//! assert_eq!(depends.tasks(), ["A", "B", "C"]);
//! assert!(depends.eval(&|task, cond| cond == DependCondition::Succeeded && task != "B"));
//! # Ok::<(), roadie_expr::ExprError>(())
//! ```
//!
//! This crate does not know about nodes, phases or processes: the engine answers the
//! questions (`check` in [`Depends::eval`], values in a [`Scope`]).

mod depends;
mod duration;
mod error;
mod exprlang;
mod items;
mod scope;
mod template;
mod when;

pub use depends::{DependCondition, Depends, depends_from_list, parse_depends, task_depends};
pub use duration::parse_duration;
pub use error::ExprError;
pub use exprlang::{check_expr, eval_expr, eval_expr_bool, format_value, scope_env};
pub use items::{expand_sequence, item_label, item_to_string, item_variables, parse_items};
pub use scope::{Chain, Scope};
pub use template::{
    Reference, Unresolved, expression_references, expression_tags, references, substitute,
};
pub use when::eval_when;
