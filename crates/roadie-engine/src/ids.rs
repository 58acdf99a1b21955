//! Argo's node naming and IDs, so node trees look the same as Argo's.

/// 32-bit FNV-1a, the hash Argo uses for node IDs.
fn fnv1a32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The ID Argo gives a node: the workflow name for the root, else
/// `<workflow>-<fnv32a(node name)>`.
pub fn node_id(workflow: &str, node_name: &str) -> String {
    if node_name == workflow {
        return workflow.to_string();
    }
    format!("{workflow}-{}", fnv1a32(node_name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_id_is_the_workflow_name() {
        assert_eq!(node_id("wf", "wf"), "wf");
    }

    #[test]
    fn child_ids_hash_the_node_name_with_fnv1a() {
        // FNV-1a of "a" is 0xe40c292c.
        assert_eq!(node_id("wf", "a"), format!("wf-{}", 0xe40c_292c_u32));
        assert_ne!(node_id("wf", "wf[0].a"), node_id("wf", "wf[0].b"));
    }
}
