//! The directory store keeps each file's last good content.

use super::DirStore;

const GOOD: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n";
const BAD: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  bogus: 1\n";

#[test]
fn invalid_edit_keeps_last_good_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.yaml");
    let mut store = DirStore::new(dir.path());

    std::fs::write(&file, GOOD).expect("write");
    let loaded = store.reload().expect("reload");
    assert!(loaded.changed);
    assert_eq!(loaded.resources.len(), 1);
    assert!(loaded.diagnostics.errors.is_empty());

    std::fs::write(&file, BAD).expect("write");
    let loaded = store.reload().expect("reload");
    assert!(!loaded.changed, "a bad edit changes nothing that is served");
    assert_eq!(loaded.resources.len(), 1, "last good content stays");
    assert_eq!(loaded.diagnostics.errors.len(), 1);
    let error = &loaded.diagnostics.errors[0];
    assert!(
        error.contains("spec.bogus") && error.contains("a.yaml"),
        "{error}"
    );
    assert!(
        error.contains("last good content stays in force"),
        "{error}"
    );

    std::fs::write(&file, GOOD.replace("a.example.com", "b.example.com")).expect("write");
    let loaded = store.reload().expect("reload");
    assert!(loaded.changed);
    assert!(loaded.diagnostics.errors.is_empty());

    std::fs::remove_file(&file).expect("remove");
    let loaded = store.reload().expect("reload");
    assert!(loaded.changed);
    assert!(loaded.resources.is_empty());
}

#[test]
fn a_new_invalid_file_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.yaml"), BAD).expect("write");
    std::fs::write(dir.path().join(".hidden.yaml"), BAD).expect("write");
    let loaded = DirStore::new(dir.path()).reload().expect("reload");
    assert!(loaded.resources.is_empty());
    assert_eq!(
        loaded.diagnostics.errors.len(),
        1,
        "hidden files are skipped"
    );
    assert!(loaded.diagnostics.errors[0].contains("nothing from this file is applied"));
}
