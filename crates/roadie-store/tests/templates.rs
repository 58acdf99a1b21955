//! WorkflowTemplates and ClusterWorkflowTemplates in the store, on both backends.

mod common;

use chrono::{TimeZone, Utc};
use common::TestDb;
use roadie_store::{StoreError, StoredTemplate, TemplateKind};

fn template(kind: TemplateKind, name: &str) -> StoredTemplate {
    let src = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: {}\nmetadata: {{name: {name}}}\n\
         spec:\n  templates:\n  - name: print\n    container: {{image: alpine, command: [echo, hi]}}\n",
        kind.as_str()
    );
    StoredTemplate {
        kind,
        name: name.into(),
        manifest: roadie_spec::parse_workflow(&src, "t.yaml").unwrap(),
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    }
}

fn create_list_get_delete(db: &TestDb) {
    let store = db.open();
    let wt = template(TemplateKind::WorkflowTemplate, "print");
    let ct = template(TemplateKind::ClusterWorkflowTemplate, "print");
    store.create_template(&wt).unwrap();
    // The same name in the other kind is a different template.
    store.create_template(&ct).unwrap();
    store
        .create_template(&template(TemplateKind::WorkflowTemplate, "another"))
        .unwrap();

    // Another connection sees them, cluster-scoped first, then by name.
    let other = db.open();
    let all = other.list_templates(None).unwrap();
    let names: Vec<_> = all.iter().map(|t| (t.kind, t.name.as_str())).collect();
    assert_eq!(
        names,
        [
            (TemplateKind::WorkflowTemplate, "another"),
            (TemplateKind::WorkflowTemplate, "print"),
            (TemplateKind::ClusterWorkflowTemplate, "print"),
        ]
    );
    assert_eq!(
        other
            .list_templates(Some(TemplateKind::ClusterWorkflowTemplate))
            .unwrap(),
        vec![ct.clone()]
    );
    assert_eq!(
        other
            .get_template(TemplateKind::WorkflowTemplate, "print")
            .unwrap(),
        Some(wt.clone())
    );

    let err = store.create_template(&wt).unwrap_err();
    assert!(
        matches!(&err, StoreError::TemplateExists { kind, name, .. } if kind == "WorkflowTemplate" && name == "print"),
        "{err}"
    );

    assert!(
        store
            .delete_template(TemplateKind::WorkflowTemplate, "print")
            .unwrap()
    );
    assert!(
        !store
            .delete_template(TemplateKind::WorkflowTemplate, "print")
            .unwrap()
    );
    assert_eq!(
        store
            .get_template(TemplateKind::WorkflowTemplate, "print")
            .unwrap(),
        None
    );
    // The cluster-scoped one with the same name is still there.
    assert!(
        store
            .get_template(TemplateKind::ClusterWorkflowTemplate, "print")
            .unwrap()
            .is_some()
    );
}

both_backends!(create_list_get_delete);
