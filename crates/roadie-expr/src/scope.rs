//! Where `{{name}}` values come from.

use std::collections::{BTreeMap, HashMap};

/// A source of variables for `{{name}}` tags and `{{= expr }}` environments.
///
/// Names are Argo's flat dotted names: `inputs.parameters.x`, `steps.a.outputs.result`,
/// `item`, `item.field`, `workflow.name`. The engine implements it over whatever it holds;
/// maps implement it directly and [`Chain`] layers several scopes.
pub trait Scope {
    /// The value of one variable, or `None` when it is not (yet) known.
    fn get(&self, name: &str) -> Option<String>;
    /// Calls `f` with every variable, for building the environment of a `{{= expr }}` tag.
    /// Only called when an expression tag is present, so it may be slow.
    fn for_each(&self, f: &mut dyn FnMut(&str, &str));
}

impl Scope for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

impl Scope for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

impl<S: Scope + ?Sized> Scope for &S {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        (**self).for_each(f)
    }
}

/// Layered scopes: the first layer that knows a name wins.
///
/// Typical use: `Chain::new(vec![&item_vars, &step_scope, &global_scope])`, so loop variables
/// shadow template variables, which shadow workflow variables.
pub struct Chain<'a> {
    layers: Vec<&'a dyn Scope>,
}

impl<'a> Chain<'a> {
    /// Layers in priority order: `layers[0]` is looked up first.
    pub fn new(layers: Vec<&'a dyn Scope>) -> Self {
        Chain { layers }
    }

    /// Adds a layer with lower priority than every existing one.
    pub fn then(mut self, layer: &'a dyn Scope) -> Self {
        self.layers.push(layer);
        self
    }
}

impl Scope for Chain<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.layers.iter().find_map(|l| l.get(name))
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &str)) {
        // Visit from the highest-priority layer and skip names already seen, so each name
        // is reported once with the value `get` would return.
        let mut seen = std::collections::HashSet::new();
        for layer in &self.layers {
            layer.for_each(&mut |k, v| {
                if seen.insert(k.to_string()) {
                    f(k, v);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_are_scopes() {
        let b = map(&[("a", "1")]);
        assert_eq!(Scope::get(&b, "a").as_deref(), Some("1"));
        assert_eq!(Scope::get(&b, "b"), None);
        let h: HashMap<String, String> = b.clone().into_iter().collect();
        assert_eq!(Scope::get(&h, "a").as_deref(), Some("1"));
        let mut all = vec![];
        h.for_each(&mut |k, v| all.push(format!("{k}={v}")));
        assert_eq!(all, vec!["a=1"]);
    }

    #[test]
    fn chain_prefers_first_layer_and_reports_each_name_once() {
        let item = map(&[("item", "x")]);
        let outer = map(&[("item", "shadowed"), ("workflow.name", "wf")]);
        let chain = Chain::new(vec![&item]).then(&outer);
        assert_eq!(chain.get("item").as_deref(), Some("x"));
        assert_eq!(chain.get("workflow.name").as_deref(), Some("wf"));
        assert_eq!(chain.get("nope"), None);
        let mut all = vec![];
        chain.for_each(&mut |k, v| all.push(format!("{k}={v}")));
        all.sort();
        assert_eq!(all, vec!["item=x", "workflow.name=wf"]);
    }
}
