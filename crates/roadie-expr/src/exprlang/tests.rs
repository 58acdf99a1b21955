use super::*;
use serde_json::json;
use std::collections::BTreeMap;

fn ev(expr: &str, env: &serde_json::Value) -> serde_json::Value {
    match eval_expr(expr, env) {
        Ok(v) => v,
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn evs(expr: &str, env: &serde_json::Value) -> String {
    match eval_value(expr, env) {
        Ok(v) => go_format(&v),
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn flat(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn scope_env_nests_dotted_names() {
    let s = flat(&[
        ("inputs.parameters.x", "1"),
        ("steps.flip-coin.outputs.result", "heads"),
        ("item", "{\"a\":1}"),
        ("item.a", "1"),
        ("workflow.name", "wf"),
    ]);
    let env = scope_env(&s);
    assert_eq!(
        env,
        json!({
            "inputs": {"parameters": {"x": "1"}},
            "steps": {"flip-coin": {"outputs": {"result": "heads"}}},
            "item": {"a": "1"},
            "workflow": {"name": "wf"}
        })
    );
    // The object wins whatever the order the names come in.
    let mut h = std::collections::HashMap::new();
    h.insert("a.b".to_string(), "1".to_string());
    h.insert("a".to_string(), "2".to_string());
    assert_eq!(scope_env(&h), json!({"a": {"b": "1"}}));
}

#[test]
fn argo_example_expressions() {
    let env = json!({
        "inputs": {"parameters": {"foo": "3", "num": "5", "should-print": "true",
                                   "week-temps": "{\"avg\":35.8,\"max\":57,\"min\":15}",
                                   "safe-to-retry": "true"}},
        "workflow": {"parameters": {
            "config": "{\"employees\": [{\"name\": \"Baris\", \"age\":43},{\"name\": \"Mo\", \"age\": 42}, {\"name\": \"Jai\", \"age\" :44}]}",
            "json": "[{\"value\": \"true\"}]",
            "weather": "{\"weekWeather\": \"eyJ0ZW1wcyI6IFszNCwgMjcsIDE1LCA1NywgNDZdfQo=\"}",
            "foo": "bar",
            "abc": "{\"a\": \"1\", \"b\": \"2\", \"c\": \"3\"}"
        }, "creationTimestamp": "2024-03-05T10:11:12Z"},
        "steps": {"flip-coin": {"outputs": {"result": "heads"}},
                  "heads": {"outputs": {"result": "it was heads"}},
                  "tails": {"outputs": {"result": "it was tails"}},
                  "fibonacci-helper": {"outputs": {"parameters": {"result": "8"}}}},
        "tasks": {"flip-coin": {"outputs": {"result": "tails"}},
                  "heads": {"outputs": {"result": "H"}},
                  "tails": {"outputs": {"result": "T"}}},
        "item": "3",
        "lastRetry": {"exitCode": "2", "status": "Failed", "duration": "30", "message": "pod deleted"}
    });
    assert_eq!(evs("asInt(inputs.parameters.foo) * 10", &env), "30");
    assert_eq!(
        evs("sprig.date('2006', workflow.creationTimestamp)", &env),
        "2024"
    );
    assert_eq!(
        evs(" inputs.parameters[\"should-print\"] == 'true'", &env),
        "true"
    );
    assert_eq!(evs("item", &env), "3");
    assert_eq!(
        evs("jsonpath(inputs.parameters['week-temps'], '$.avg')", &env),
        "35.8"
    );
    assert_eq!(
        evs("jsonpath(inputs.parameters['week-temps'], '$.max')", &env),
        "57"
    );
    assert_eq!(
        evs("jsonpath(inputs.parameters['week-temps'], '$.min')", &env),
        "15"
    );
    assert_eq!(evs("jsonpath(workflow.parameters.abc, '$.a')", &env), "1");
    assert_eq!(
        evs(
            "jsonpath(workflow.parameters.config, '$.employees[*].name')",
            &env
        ),
        "[Baris Mo Jai]"
    );
    assert_eq!(
        evs(
            "jsonpath(workflow.parameters.config, '$.employees[0:1]')",
            &env
        ),
        "[map[age:43 name:Baris]]"
    );
    assert_eq!(
        evs(
            "jsonpath(workflow.parameters.config, '$.employees[?(@.age>42 && @.age<44)].age')",
            &env
        ),
        "[43]"
    );
    assert_eq!(
        evs(
            "jsonpath(workflow.parameters.config, '$.employees[?(@.name==\"Baris\")].age')",
            &env
        ),
        "[43]"
    );
    assert_eq!(
        evs(
            "jsonpath(workflow.parameters.json, '$[0].value') == 'true'",
            &env
        ),
        "true"
    );
    assert_eq!(evs("toJson(filter([1, 3], {# > 1}))", &env), "[3]");
    assert_eq!(
        evs(
            "asInt(inputs.parameters.num) == 1? 1: asInt(inputs.parameters.num) == 2? 1: steps['fibonacci-helper'].outputs.parameters.result",
            &env
        ),
        "8"
    );
    assert_eq!(
        evs(
            "steps['flip-coin'].outputs.result == 'heads' ? steps.heads.outputs.result : steps.tails.outputs.result",
            &env
        ),
        "it was heads"
    );
    assert_eq!(
        evs(
            "tasks['flip-coin'].outputs.result == 'heads' ? tasks.heads.outputs.result : tasks.tails.outputs.result",
            &env
        ),
        "T"
    );
    assert_eq!(evs("workflow.parameters.foo", &env), "bar");
    // expression-reusing-verbose-snippets.yaml
    let week = evs(
        "
                map([
                    jsonpath(sprig.b64dec(jsonpath(workflow.parameters.weather, '$.weekWeather')), '$.temps')
                  ], {
                    toJson({
                      avg: sprig.add(#[0], #[1], #[2], #[3], #[4]) / 5,
                      min: sprig.min(#[0], #[1], #[2], #[3], #[4]),
                      max: sprig.max(#[0], #[1], #[2], #[3], #[4])
                    })
                })[0]
              ",
        &env,
    );
    assert_eq!(week, r#"{"avg":35.8,"max":57,"min":15}"#);
    // retry-conditional.yaml, after `{{inputs.parameters.safe-to-retry}}` became `true`.
    assert!(
        eval_expr_bool(
            "asInt(lastRetry.exitCode) > 1 &&\nlastRetry.status != \"Error\" &&\nasInt(lastRetry.duration) < 120 &&\n(true == true || lastRetry.message matches 'imminent node shutdown|pod deleted')",
            &env
        )
        .unwrap()
    );
}

#[test]
fn retry_expressions() {
    let env = |code: &str, status: &str, message: &str| json!({"lastRetry": {"exitCode": code, "status": status, "message": message, "duration": "5"}});
    let e = "lastRetry.status == \"Error\" || (lastRetry.status == \"Failed\" && asInt(lastRetry.exitCode) not in [1,2])";
    assert!(eval_expr_bool(e, &env("3", "Failed", "")).unwrap());
    assert!(!eval_expr_bool(e, &env("2", "Failed", "")).unwrap());
    assert!(eval_expr_bool(e, &env("1", "Error", "")).unwrap());
    assert!(eval_expr_bool("asInt(lastRetry.exitCode) > 1", &env("2", "Failed", "")).unwrap());
    assert!(
        eval_expr_bool(
            "lastRetry.message matches 'x'",
            &env("1", "Failed", "a x b")
        )
        .unwrap()
    );
    assert!(
        !eval_expr_bool(
            "lastRetry.message matches '^x$'",
            &env("1", "Failed", "a x b")
        )
        .unwrap()
    );
    let err = eval_expr_bool("lastRetry.exitCode", &env("1", "Failed", "")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to evaluate expression 'lastRetry.exitCode': expected a boolean result, got string 1"
    );
    let err =
        eval_expr_bool("asInt(lastRetry.message) > 1", &env("1", "Failed", "oops")).unwrap_err();
    assert!(
        matches!(&err, ExprError::Eval { expr, .. } if expr == "asInt(lastRetry.message) > 1"),
        "{err:?}"
    );
}

#[test]
fn builtins_of_expr_lang() {
    let env = json!({"xs": [1, 2, 3], "m": {"k": "v"}, "s": "hello"});
    assert_eq!(ev("len(xs)", &env), json!(3));
    assert_eq!(ev("all(xs, {# > 0})", &env), json!(true));
    assert_eq!(ev("any(xs, {# > 2})", &env), json!(true));
    assert_eq!(ev("filter(xs, {# % 2 == 1})", &env), json!([1, 3]));
    assert_eq!(ev("map(xs, {# * 2})", &env), json!([2, 4, 6]));
    assert_eq!(ev("m.missing ?? 'default'", &env), json!("default"));
    assert_eq!(ev("2 in xs", &env), json!(true));
    assert_eq!(ev("s contains 'ell'", &env), json!(true));
    assert_eq!(ev("s startsWith 'he'", &env), json!(true));
    assert_eq!(ev("s + ' world'", &env), json!("hello world"));
    assert_eq!(ev("xs[0] + xs[-1]", &env), json!(4));
    assert_eq!(ev("m['k']", &env), json!("v"));
    assert_eq!(ev("string(42)", &env), json!("42"));
    assert_eq!(ev("asFloat('1.5') * 2", &env), json!(3.0));
    assert_eq!(ev("7 / 2", &env), json!(3.5));
    assert_eq!(ev("fromJson('{\"a\": [1, 2]}').a[1]", &env), json!(2));
    assert_eq!(
        ev("toJson({b: 1, a: 'x<y'})", &env),
        json!("{\"a\":\"x\\u003cy\",\"b\":1}")
    );
    assert_eq!(ev("nil", &env), json!(null));
    assert_eq!(
        ev("{a: [1, 2.5, true]}", &env),
        json!({"a": [1, 2.5, true]})
    );
    // A non-object environment, and none.
    assert_eq!(ev("1 + 1", &json!(null)), json!(2));
    assert!(
        eval_expr("1", &json!([1]))
            .unwrap_err()
            .to_string()
            .contains("must be a JSON object")
    );
}

#[test]
fn sprig_functions() {
    let env = json!({"s": "  Hello World  ", "n": "7", "l": ["a", "b"]});
    let cases: &[(&str, serde_json::Value)] = &[
        ("sprig.trim(s)", json!("Hello World")),
        ("sprig.upper('abc')", json!("ABC")),
        ("sprig.lower('ABC')", json!("abc")),
        ("sprig.title('hello world')", json!("Hello World")),
        ("sprig.replace('o', '0', 'foo')", json!("f00")),
        ("sprig.split('-', 'a-b')", json!({"_0": "a", "_1": "b"})),
        ("sprig.splitList('-', 'a-b')", json!(["a", "b"])),
        ("sprig.join(',', l)", json!("a,b")),
        ("sprig.join('+', [1, 2])", json!("1+2")),
        ("sprig.contains('ell', 'hello')", json!(true)),
        ("sprig.hasPrefix('he', 'hello')", json!(true)),
        ("sprig.hasSuffix('lo', 'hello')", json!(true)),
        ("sprig.trimPrefix('he', 'hello')", json!("llo")),
        ("sprig.trimSuffix('lo', 'hello')", json!("hel")),
        ("sprig.trimAll('$', '$5.00$')", json!("5.00")),
        ("sprig.nospace(' a b ')", json!("ab")),
        ("sprig.add(1, '2', 3.9)", json!(6)),
        ("sprig.add1(n)", json!(8)),
        ("sprig.sub(n, 2)", json!(5)),
        ("sprig.mul(2, 3, 4)", json!(24)),
        ("sprig.div(7, 2)", json!(3)),
        ("sprig.mod(7, 4)", json!(3)),
        ("sprig.max(1, 9, 3)", json!(9)),
        ("sprig.min(4, 2, 8)", json!(2)),
        ("sprig.addf(1.5, 1)", json!(2.5)),
        ("sprig.int('42')", json!(42)),
        ("sprig.int('nope')", json!(0)),
        ("sprig.int64(3.7)", json!(3)),
        ("sprig.atoi('12')", json!(12)),
        ("sprig.float64('2.5')", json!(2.5)),
        ("sprig.toString(5)", json!("5")),
        ("sprig.quote('a', 1)", json!("\"a\" \"1\"")),
        ("sprig.squote('a')", json!("'a'")),
        ("sprig.cat('a', 1, nil, 'b')", json!("a 1 b")),
        ("sprig.default('d', '')", json!("d")),
        ("sprig.default('d', 'given')", json!("given")),
        ("sprig.default('d')", json!("d")),
        ("sprig.empty('')", json!(true)),
        ("sprig.empty(0)", json!(true)),
        ("sprig.empty([])", json!(true)),
        ("sprig.empty('x')", json!(false)),
        ("sprig.coalesce('', nil, 'z')", json!("z")),
        ("sprig.ternary('yes', 'no', 1 > 0)", json!("yes")),
        ("sprig.list(1, 'a')", json!([1, "a"])),
        ("sprig.dict('a', 1, 'b', 'x')", json!({"a": 1, "b": "x"})),
        ("sprig.len('abc')", json!(3)),
        ("sprig.len(l)", json!(2)),
        ("sprig.first(l)", json!("a")),
        ("sprig.last(l)", json!("b")),
        ("sprig.rest(l)", json!(["b"])),
        ("sprig.initial(l)", json!(["a"])),
        ("sprig.uniq([1, 1, 2])", json!([1, 2])),
        ("sprig.has('a', l)", json!(true)),
        ("sprig.keys({a: 1})", json!(["a"])),
        ("sprig.hasKey({a: 1}, 'a')", json!(true)),
        ("sprig.get({a: 'x'}, 'a')", json!("x")),
        (
            "sprig.toJson({b: [1], a: nil})",
            json!("{\"a\":null,\"b\":[1]}"),
        ),
        ("sprig.toRawJson('<')", json!("\"<\"")),
        ("sprig.toPrettyJson({a: 1})", json!("{\n  \"a\": 1\n}")),
        ("sprig.fromJson('[1]')", json!([1])),
        ("sprig.b64enc('hello')", json!("aGVsbG8=")),
        ("sprig.b64dec('aGVsbG8=')", json!("hello")),
        ("sprig.regexMatch('^[a-z]+$', 'abc')", json!(true)),
        ("sprig.regexFind('[0-9]+', 'ab12cd')", json!("12")),
        ("sprig.regexReplaceAll('[0-9]', 'a1b2', 'X')", json!("aXbX")),
        ("sprig.trunc(3, 'abcdef')", json!("abc")),
        ("sprig.trunc(-2, 'abcdef')", json!("ef")),
        ("sprig.substr(1, 3, 'abcdef')", json!("bc")),
        ("sprig.repeat(3, 'ab')", json!("ababab")),
        ("sprig.indent(2, 'a\\nb')", json!("  a\n  b")),
        (
            "sprig.date('2006-01-02T15:04:05Z07:00', 0)",
            json!("1970-01-01T00:00:00+00:00"),
        ),
        (
            "sprig.date('Jan 2, 2006 3:04PM', '2024-03-05T15:07:08+01:00')",
            json!("Mar 5, 2024 3:07PM"),
        ),
        // `sprig` inside a string is not rewritten; spacing around the dot is allowed.
        (
            "'sprig.upper(x)' + sprig . upper('y')",
            json!("sprig.upper(x)Y"),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(&ev(expr, &env), want, "{expr}");
    }
    let err = eval_expr("sprig.div(1, 0)", &env).unwrap_err();
    assert!(err.to_string().contains("division by zero"), "{err}");
    let err = eval_expr("sprig.nope(1)", &env).unwrap_err();
    assert!(err.to_string().contains("sprig_nope"), "{err}");
    let err = eval_expr("sprig.trim()", &env).unwrap_err();
    assert!(
        err.to_string()
            .contains("sprig.trim() takes 1 argument, got 0"),
        "{err}"
    );
    let err = eval_expr("sprig.date('2006', 'yesterday')", &env).unwrap_err();
    assert!(err.to_string().contains("not an RFC 3339 time"), "{err}");
}

#[test]
fn jsonpath_cases() {
    let env = json!({"doc": "{\"a\": {\"b\": [10, 20]}, \"s\": \"x\"}"});
    assert_eq!(ev("jsonpath(doc, '$.a.b[1]')", &env), json!(20));
    assert_eq!(ev("jsonpath(doc, '$.s')", &env), json!("x"));
    assert_eq!(ev("jsonpath(doc, '$.missing')", &env), json!(null));
    assert_eq!(ev("jsonpath(doc, '$.a.b[*]')", &env), json!([10, 20]));
    assert_eq!(ev("jsonpath(doc, '$..b')", &env), json!([[10, 20]]));
    assert_eq!(ev("jsonpath(doc, \"$['a']['b'][0]\")", &env), json!(10));
    // An already-parsed value works too.
    assert_eq!(ev("jsonpath({k: 1}, '$.k')", &env), json!(1));
    let err = eval_expr("jsonpath('not json', '$.a')", &env).unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let err = eval_expr("jsonpath(doc, 'a[')", &env).unwrap_err();
    assert!(err.to_string().contains("invalid path 'a['"), "{err}");
}

#[test]
fn go_printing() {
    assert_eq!(go_float(35.8), "35.8");
    assert_eq!(go_float(3.0), "3");
    assert_eq!(go_float(123456.0), "123456");
    assert_eq!(go_float(1e6), "1e+06");
    assert_eq!(go_float(1234567.0), "1.234567e+06");
    assert_eq!(go_float(0.0001), "0.0001");
    assert_eq!(go_float(0.00001), "1e-05");
    assert_eq!(go_float(-2.5), "-2.5");
    assert_eq!(go_float(0.0), "0");
    assert_eq!(go_float(f64::NAN), "NaN");
    assert_eq!(go_float(f64::INFINITY), "+Inf");
    assert_eq!(go_format(&Value::Nil), "<nil>");
    assert_eq!(
        format_value(&json!({"b": [1, "x"], "a": {"c": true}})),
        "map[a:map[c:true] b:[1 x]]"
    );
    assert_eq!(go_json(&Value::Float(1e21), true, None), "1e+21");
    assert_eq!(go_json(&Value::Float(1e-7), true, None), "1e-7");
    assert_eq!(go_json(&Value::Float(2.0), true, None), "2");
    assert_eq!(
        go_json(&Value::String("a\"b\\\n\u{1}&".into()), true, None),
        "\"a\\\"b\\\\\\n\\u0001\\u0026\""
    );
    assert_eq!(go_json(&Value::Array(vec![]), true, Some("  ")), "[]");
}

#[test]
fn errors_name_the_expression() {
    let env = json!({});
    let err = eval_expr("1 +", &env).unwrap_err();
    match &err {
        ExprError::Syntax { expr, message } => {
            assert_eq!(expr, "1 +");
            assert!(!message.contains('\n'), "{message}");
            assert!(message.starts_with("at 1:4"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = eval_expr("nope == 1", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to evaluate expression 'nope == 1': unknown variable: nope"
    );
    let err = eval_expr("noSuchFunction(1)", &env).unwrap_err();
    assert!(err.to_string().contains("noSuchFunction"), "{err}");
}

#[test]
fn sprig_rewrite_only_touches_the_namespace() {
    assert_eq!(preprocess("sprig.trim(x)"), "sprig_trim(x)");
    assert_eq!(preprocess("a.sprig.trim(x)"), "a.sprig.trim(x)");
    assert_eq!(preprocess("sprigs.x"), "sprigs.x");
    assert_eq!(
        preprocess("'sprig.x' + \"sprig.y\" + `sprig.z`"),
        "`sprig.x` + `sprig.y` + `sprig.z`"
    );
    assert_eq!(
        preprocess("'it\\'s sprig.x' + sprig.y(1)"),
        "`it's sprig.x` + sprig_y(1)"
    );
    assert_eq!(
        preprocess("f(sprig.a(1),sprig.b(2)) // sprig.c"),
        "f(sprig_a(1),sprig_b(2)) // sprig.c"
    );
    assert_eq!(preprocess("no namespace"), "no namespace");
}

#[test]
fn map_literals_with_computed_values() {
    let env = json!({"xs": [1, 2], "s": "v"});
    assert_eq!(
        ev("{a: 1 + 1, 'b': xs, \"c\": {d: s}}", &env),
        json!({"a": 2, "b": [1, 2], "c": {"d": "v"}})
    );
    assert_eq!(ev("{}", &env), json!({}));
    assert_eq!(ev("{a: 1,}", &env), json!({"a": 1}));
    assert_eq!(
        ev("{a: true ? 'y' : 'n', b: [1, {c: 2}]}.b[1].c", &env),
        json!(2)
    );
    assert_eq!(
        ev("map(xs, {toJson({v: # * 10})})", &env),
        json!(["{\"v\":10}", "{\"v\":20}"])
    );
    assert_eq!(ev("filter(xs, {# > 1})", &env), json!([2]));
    assert_eq!(
        ev("map(xs, { # > 1 ? 'big' : 'small' })", &env),
        json!(["small", "big"])
    );
    assert_eq!(ev("'{a: 1}'", &env), json!("{a: 1}"));
    assert_eq!(
        preprocess("{a: f(1, 2), b: '}'}"),
        "__map(`a`, f(1, 2), `b`, `}`)"
    );
    assert_eq!(preprocess("filter(xs, {# > 1})"), "filter(xs, {# > 1})");
    assert_eq!(
        preprocess("if x { {a: 1} } else { 2 }"),
        "if x { __map(`a`, 1) } else { 2 }"
    );
    // Unbalanced input is passed through for the parser to report.
    assert!(matches!(
        eval_expr("{a: 1", &env),
        Err(ExprError::Syntax { .. })
    ));
}

#[test]
fn hostile_input_never_panics() {
    let env = json!({"s": "x"});
    for e in [
        "",
        " ",
        "{",
        "}",
        "{{",
        "(",
        ")",
        "[",
        "]",
        "'",
        "\"",
        "`",
        "#",
        "a.",
        ".a",
        "1..",
        "..1",
        "?",
        "??",
        "sprig.",
        "sprig",
        "__map(1)",
        "{a:}",
        "{:1}",
        "{'a' 1}",
        "let",
        "let x",
        "let x =",
        "if",
        "if x {",
        "[1, 2][",
        "s[1:",
        "1 ** ** 2",
        "not",
        "b'\\x'",
        "'\\u12'",
        "0x",
        "1e",
        "$env.",
        "#[",
        "map(",
        "filter([1], {",
        "s |",
        "s | upper",
        "jsonpath(",
        "sprig.date(",
        "toJson(",
        "{a: {b: {c: {d:",
        "/*",
        "//",
    ] {
        let _ = eval_expr(e, &env);
        let _ = crate::expression_references(e);
        let _ = preprocess(e);
    }
}

#[test]
fn string_literals_decode_like_go() {
    let env = json!({});
    assert_eq!(ev("'it\\'s'", &env), json!("it's"));
    assert_eq!(ev("\"say \\\"hi\\\"\"", &env), json!("say \"hi\""));
    assert_eq!(ev("'\\u0041\\u00e9'", &env), json!("A\u{e9}"));
    assert_eq!(ev("'a\\\\nb'", &env), json!("a\\nb"));
    assert_eq!(ev("'tab\\there'", &env), json!("tab\there"));
    assert_eq!(ev("'back`tick'", &env), json!("back`tick"));
    assert_eq!(ev("`raw \\n`", &env), json!("raw \\n"));
    assert_eq!(ev("{'k`': 1}", &env), json!({"k`": 1}));
    assert_eq!(ev("{'it\\'s': 1}", &env), json!({"it's": 1}));
    assert_eq!(ev("'a.b' matches '^a\\\\.b$'", &env), json!(true));
    assert_eq!(ev("b'ab' == b'ab'", &env), json!(true));
}

#[test]
fn check_expr_parses_without_evaluating() {
    assert!(check_expr("asInt(lastRetry.exitCode) > 1 && sprig.trim(x) == 'a'").is_ok());
    assert!(check_expr("{a: unknownVariable + 1}").is_ok());
    let err = check_expr("1 +").unwrap_err();
    assert!(
        matches!(&err, ExprError::Syntax { expr, .. } if expr == "1 +"),
        "{err:?}"
    );
}
