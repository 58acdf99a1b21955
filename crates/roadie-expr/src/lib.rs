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
pub use exprlang::{eval_expr, eval_expr_bool, format_value, scope_env};
pub use items::{expand_sequence, item_to_string, item_variables, parse_items};
pub use scope::{Chain, Scope};
pub use template::{Reference, Unresolved, expression_references, references, substitute};
pub use when::eval_when;
