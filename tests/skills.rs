//! End-to-end: Agent Skills. Only names and descriptions reach the model up front; the `skill`
//! tool loads one and reads its files; its scripts run through bash in the sandbox, where the
//! user's skill folders are readable and never writable; `permission.skill` hides and refuses
//! skills by name; an agent's `skills:` preloads; a link out of the repository is never
//! followed; `deputy skills` lists, shows and validates with positions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{Harness, of_type, write};

const PDF: &str = "---\nname: pdf-forms\ndescription: Fill PDF forms. Use when a PDF has form fields.\nallowed-tools: Read Bash\n---\n# Filling PDF forms\nPDF-BODY-MARKER: run scripts/fill.sh with the form's name.\n";

fn skill_tool(h: &Harness, i: usize) -> Option<serde_json::Value> {
    h.mock.requests()[i].body["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["function"]["name"] == "skill").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_up_front_then_the_skill_and_its_files_on_demand() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: skill, arguments: {name: pdf-forms}}
  - tool_calls:
      - {name: skill, arguments: {name: pdf-forms, file: scripts/fill.sh}}
      - {name: skill, arguments: {name: pdf-forms, file: ../../../.env}}
      - {name: skill, arguments: {name: nope}}
      - {name: skill, arguments: {name: pdf-forms, file: ref.md}}
  - text: done
"#,
    )
    .await;
    write(&h.ws.join(".claude/skills/pdf-forms/SKILL.md"), PDF);
    write(
        &h.ws.join(".claude/skills/pdf-forms/scripts/fill.sh"),
        "echo FILLED-$1\n",
    );
    write(&h.ws.join(".env"), "KEY=TOPSECRET\n");
    // A file of the skill that is `.env` under another name (a hard link).
    std::fs::hard_link(
        h.ws.join(".env"),
        h.ws.join(".claude/skills/pdf-forms/ref.md"),
    )
    .unwrap();
    write(
        &h.ws.join(".agents/skills/review-sql/SKILL.md"),
        "---\nname: review-sql\ndescription: Review SQL migrations for locking problems.\n---\nSQL-BODY\n",
    );
    let (code, v, stderr) = h.run_json(&["fill the form"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    // Up front: names and descriptions, never a body.
    let tool = skill_tool(&h, 0).expect("the skill tool is offered");
    let desc = tool["function"]["description"].as_str().unwrap();
    assert!(
        desc.contains("<name>pdf-forms</name>") && desc.contains("form fields"),
        "{desc}"
    );
    assert!(desc.contains("<name>review-sql</name>"), "{desc}");
    let first = h.mock.requests()[0].body.to_string();
    assert!(!first.contains("PDF-BODY-MARKER") && !first.contains("SQL-BODY"));

    let results = h.tool_results();
    assert!(results[0].contains("PDF-BODY-MARKER"), "{results:?}");
    assert!(results[0].contains("scripts/fill.sh"), "{results:?}");
    assert!(results[0].contains("Base directory: "), "{results:?}");
    assert_eq!(results[1], "echo FILLED-$1\n");
    assert!(!results[2].contains("TOPSECRET"), "{results:?}");
    assert!(results[3].contains("no skill named `nope`"), "{results:?}");
    assert!(
        results[4].contains("hard link") && !results[4].contains("TOPSECRET"),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_are_refused_by_name_preloaded_by_agents_and_never_followed_out() {
    let h = Harness::yaml("steps:\n  - tool_calls:\n      - {name: skill, arguments: {name: secret-ops}}\n  - text: done\n  - text: done\n").await;
    write(&h.ws.join(".claude/skills/pdf-forms/SKILL.md"), PDF);
    write(
        &h.ws.join(".deputy/skills/secret-ops/SKILL.md"),
        "---\nname: secret-ops\ndescription: Operations nobody should run.\n---\nOPS-BODY\n",
    );
    // A skill folder that is a link out of the repository.
    let outside = h.dir.path().join("outside-skill");
    write(
        &outside.join("SKILL.md"),
        "---\nname: evil\ndescription: planted\n---\nOUTSIDE-BODY\n",
    );
    std::os::unix::fs::symlink(&outside, h.ws.join(".claude/skills/evil")).unwrap();
    h.write_user_config("[permission.skill]\n\"secret-*\" = \"deny\"\n");
    let (code, v, stderr) = h.run_json(&["go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let desc = skill_tool(&h, 0).unwrap()["function"]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        desc.contains("pdf-forms") && !desc.contains("secret-ops"),
        "{desc}"
    );
    assert!(!desc.contains("evil"), "{desc}");
    let results = h.tool_results();
    assert!(results[0].contains("permission denied"), "{results:?}");
    assert!(!results[0].contains("OPS-BODY"));
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("evil") && warnings.contains("outside"),
        "{warnings}"
    );

    // An agent's `skills:` puts the skill in its prompt up front.
    h.write_agent(
        "filler",
        "---\nname: filler\nskills: [pdf-forms, missing-one]\n---\nYou fill forms.",
    );
    let (code, v, stderr) = h.run_json(&["--agent", "filler", "go"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    let reqs = h.mock.requests();
    let sys = reqs.last().unwrap().body["messages"][0]["content"]
        .as_str()
        .unwrap();
    assert!(sys.contains("PDF-BODY-MARKER"), "{sys}");
    assert!(v["warnings"].to_string().contains("missing-one"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_skill_scripts_run_in_the_sandbox_and_its_folder_stays_read_only() {
    if !common::sandbox_available() {
        return;
    }
    // The skill's folder comes back in the loaded skill ("Base directory: …"); the next call
    // uses it.
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: skill, arguments: {name: greet}}
  - tool_calls:
      - {name: bash, arguments: {command: "sh {{capture:Base directory: (\\S+)}}/hello.sh; echo planted > {{capture:Base directory: (\\S+)}}/planted.txt || echo write-refused"}}
  - text: done
"#,
    )
    .await;
    let dir = h.home.join(".claude/skills/greet");
    write(
        &dir.join("SKILL.md"),
        "---\nname: greet\ndescription: Greets. Use to say hello.\n---\nRun hello.sh.\n",
    );
    write(&dir.join("hello.sh"), "echo HELLO-FROM-THE-SKILL\n");
    let (code, v, stderr) = h.run_json(&["say hello"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let results = h.tool_results();
    assert!(results[1].contains("HELLO-FROM-THE-SKILL"), "{results:?}");
    assert!(results[1].contains("write-refused"), "{results:?}");
    assert!(
        !dir.join("planted.txt").exists(),
        "a command wrote into the user's skill"
    );
    let events = h.journal(&h.only_session());
    assert!(of_type(&events, "tool.completed").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deputy_skills_lists_shows_and_validates_with_positions() {
    let h = Harness::yaml("steps:\n  - text: x\n").await;
    write(&h.ws.join(".claude/skills/pdf-forms/SKILL.md"), PDF);
    let out = h.run(&["skills", "list"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("pdf-forms") && text.contains("project"),
        "{text}"
    );
    let out = h.run(&["skills", "show", "pdf-forms"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("PDF-BODY-MARKER"));
    let out = h.run(&["skills", "show", "pdf-form"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `pdf-forms`"));
    let out = h.run(&["skills", "validate"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = h.run(&["skills", "validate", "no/such/skill"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/skill: no such file"));

    let bad = h.ws.join(".claude/skills/bad/SKILL.md");
    write(&bad, "---\nname: Bad Skill\n---\nbody\n");
    let out = h.run(&["skills", "validate"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(err.contains("`description` is missing"), "{err}");
    // The broken one is named when a session starts, and the good one still works.
    let out = h.run(&["skills", "list"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("pdf-forms"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a skill name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skills_allowed_tools_narrow_and_never_widen() {
    let h = Harness::yaml(
        r#"
steps:
  - tool_calls:
      - {name: skill, arguments: {name: pdf-forms}}
  - tool_calls:
      - {name: write, arguments: {path: out.txt, content: "outside the skill's tools"}}
      - {name: read, arguments: {path: notes.txt}}
  - text: done
"#,
    )
    .await;
    write(&h.ws.join(".claude/skills/pdf-forms/SKILL.md"), PDF);
    write(&h.ws.join("notes.txt"), "NOTES\n");
    // The same name in the user's folder: the project's comes first, the clash is named.
    write(
        &h.home.join(".claude/skills/pdf-forms/SKILL.md"),
        "---\nname: pdf-forms\ndescription: the user's copy\n---\nUSER-COPY\n",
    );
    let (code, v, stderr) = h.run_json(&["fill"]).await;
    assert_eq!(code, Some(0), "{stderr}\n{v:#}");
    h.assert_strict_ok();
    let results = h.tool_results();
    assert!(!results[0].contains("USER-COPY"));
    assert!(
        results[1].contains("permission denied") && results[1].contains("uses only read, bash"),
        "{results:?}"
    );
    assert!(!h.ws.join("out.txt").exists());
    assert!(results[2].contains("NOTES"), "{results:?}");
    assert!(
        v["warnings"]
            .to_string()
            .contains("has the same name and comes first"),
        "{v:#}"
    );
}
