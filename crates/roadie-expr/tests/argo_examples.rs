//! The `when:`, `depends:`, loop and expression fields of Argo's example workflows, run
//! through the public API the way the engine runs them: substitute, then evaluate.

use std::collections::BTreeMap;

use roadie_expr::{
    Chain, DependCondition, Unresolved, eval_expr_bool, eval_when, expand_sequence, item_variables,
    parse_depends, parse_items, scope_env, substitute,
};

fn scope(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn when(text: &str, s: &BTreeMap<String, String>) -> bool {
    let substituted = substitute(text, s, Unresolved::Error).unwrap();
    eval_when(&substituted).unwrap()
}

#[test]
fn coinflip_and_conditionals() {
    let s = scope(&[
        ("steps.flip-coin.outputs.result", "heads"),
        ("steps.flip-again.outputs.result", "tails"),
        ("tasks.flip-coin.outputs.result", "tails"),
        ("inputs.parameters.should-print", "true"),
        ("workflow.status", "Failed"),
        ("steps.approval.outputs.parameters.approve", "YES"),
    ]);
    assert!(when("{{steps.flip-coin.outputs.result}} == heads", &s));
    assert!(!when("{{steps.flip-coin.outputs.result}} == tails", &s));
    assert!(when("{{tasks.flip-coin.outputs.result}} == tails", &s));
    assert!(when("{{steps.flip-again.outputs.result}} =~ tai", &s));
    assert!(when(
        "( {{steps.flip-coin.outputs.result}} == heads &&\n  {{steps.flip-again.outputs.result}} == tails\n) ||\n( {{steps.flip-coin.outputs.result}} == tails &&\n  {{steps.flip-again.outputs.result}} == tails )",
        &s
    ));
    assert!(when("{{inputs.parameters.should-print}} == true", &s));
    assert!(when(
        "{{= inputs.parameters[\"should-print\"] == 'true'}}",
        &s
    ));
    assert!(when("{{workflow.status}} != Succeeded", &s));
    assert!(when(
        "{{steps.approval.outputs.parameters.approve}} == YES",
        &s
    ));
}

#[test]
fn loop_items_feed_when_and_expressions() {
    let items =
        parse_items(r#"[{"evenness": "even", "n": 2}, {"evenness": "odd", "n": 3}]"#).unwrap();
    let outer = scope(&[("workflow.name", "wf")]);
    let mut ran = vec![];
    for item in &items {
        let vars: BTreeMap<String, String> = item_variables(item).into_iter().collect();
        let layered = Chain::new(vec![&vars, &outer]);
        let cond = substitute("{{item.evenness}} == even", &layered, Unresolved::Error).unwrap();
        if eval_when(&cond).unwrap() {
            ran.push(
                substitute(
                    "{{workflow.name}}-{{=asInt(item.n) * 10}}",
                    &layered,
                    Unresolved::Error,
                )
                .unwrap(),
            );
        }
    }
    assert_eq!(ran, vec!["wf-20"]);
}

#[test]
fn sequence_items() {
    let seq: roadie_spec::Sequence = serde_json::from_value(serde_json::json!({
        "count": "5", "start": "1", "format": "2020-05-%02X"
    }))
    .unwrap();
    assert_eq!(
        expand_sequence(&seq).unwrap(),
        [
            "2020-05-01",
            "2020-05-02",
            "2020-05-03",
            "2020-05-04",
            "2020-05-05"
        ]
    );
}

#[test]
fn dag_depends() {
    let d = parse_depends("A && (C.Succeeded || C.Failed)").unwrap();
    assert_eq!(d.tasks(), ["A", "C"]);
    let done = |task: &str, cond: DependCondition| match task {
        "A" => cond == DependCondition::Succeeded,
        "C" => cond == DependCondition::Failed,
        _ => false,
    };
    assert!(d.eval(&done));
    let d = parse_depends("B.Failed && C").unwrap();
    assert!(!d.eval(&done));
}

#[test]
fn retry_expression_with_substituted_parameter() {
    let s = scope(&[("inputs.parameters.safe-to-retry", "false")]);
    let text = substitute(
        "asInt(lastRetry.exitCode) > 1 && lastRetry.status != \"Error\" && asInt(lastRetry.duration) < 120 && ({{inputs.parameters.safe-to-retry}} == true || lastRetry.message matches 'imminent node shutdown|pod deleted')",
        &s,
        Unresolved::Error,
    )
    .unwrap();
    let mut env = scope_env(&s);
    env["lastRetry"] = serde_json::json!({"exitCode": "2", "status": "Failed", "duration": "10", "message": "pod deleted"});
    assert!(eval_expr_bool(&text, &env).unwrap());
    env["lastRetry"]["message"] = "out of memory".into();
    assert!(!eval_expr_bool(&text, &env).unwrap());
}
