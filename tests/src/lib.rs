//! bugbot's test support: the sandbox (local stand-ins of the outside services), the launcher of the
//! local stack, and helpers that sign requests the way Discord and GitHub do.

#[cfg(test)]
mod configuration;
pub mod fixtures;
pub mod localenv;
pub mod sandbox;
pub mod signing;
pub mod stack;

#[cfg(test)]
mod deploy_files {
    use crate::localenv::repo_root;

    /// The GitHub App manifest asks for exactly what bugbot uses: reading and writing contents
    /// (pushing a branch), issues (reading them, status comments) and pull requests; and the
    /// events the gateway acts on (comments, labels on issues and pull requests, reviews).
    #[test]
    fn github_app_manifest_has_exactly_the_needed_permissions_and_events() {
        let text =
            std::fs::read_to_string(repo_root().join("deploy/github-app-manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            m["default_permissions"],
            serde_json::json!({"metadata": "read", "contents": "write", "issues": "write", "pull_requests": "write"})
        );
        assert_eq!(
            m["default_events"],
            serde_json::json!([
                "issue_comment",
                "issues",
                "pull_request",
                "pull_request_review"
            ])
        );
        assert!(
            m["hook_attributes"]["url"]
                .as_str()
                .unwrap()
                .ends_with("/github/webhook")
        );
    }
}
