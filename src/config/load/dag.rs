//! The task DAG: edges from data and `depends_on`, cycles reported at the reference that
//! closes them (an input's `task.X.outputs.Y` or a `depends_on` entry), with the tasks on them.

use super::*;

impl Loader {
    pub(super) fn check_dag(&mut self, spec: &mut JobSpec) {
        let mut edges = Vec::new();
        for t in spec.tasks.values() {
            for (name, i) in &t.inputs {
                if let InputSource::TaskOutput { task, output, size_gb } = i {
                    if !spec.tasks.contains_key(task) {
                        self.err(
                            t.pos.clone().map(|p| (p, String::new())),
                            "Undefined task",
                            format!("input `{name}` of {} reads {task}, which does not exist.", t.address),
                            None,
                        );
                        continue;
                    }
                    edges.push(Edge {
                        from: task.clone(),
                        to: t.address.clone(),
                        size_gb: *size_gb,
                        output: Some(output.clone()),
                    });
                }
            }
            for d in &t.depends_on {
                if d == &t.address {
                    self.err(
                        t.pos.clone().map(|p| (p, String::new())),
                        "Task depends on itself",
                        format!("{} lists itself in depends_on.", t.address),
                        None,
                    );
                    continue;
                }
                if !edges.iter().any(|e: &Edge| &e.from == d && e.to == t.address) {
                    edges.push(Edge { from: d.clone(), to: t.address.clone(), size_gb: 0.0, output: None });
                }
            }
        }
        // Cycle detection (iterative DFS in address order).
        let mut down: BTreeMap<&TaskAddr, Vec<&TaskAddr>> = BTreeMap::new();
        for e in &edges {
            if e.from != e.to {
                down.entry(&e.from).or_default().push(&e.to);
            }
        }
        let mut color: BTreeMap<&TaskAddr, u8> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        for start in spec.tasks.keys() {
            if color.get(start).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(&TaskAddr, usize)> = vec![(start, 0)];
            color.insert(start, 1);
            while let Some((node, i)) = stack.pop() {
                let kids = down.get(node).map(Vec::as_slice).unwrap_or(&[]);
                if i < kids.len() {
                    stack.push((node, i + 1));
                    let k = kids[i];
                    match color.get(k).copied().unwrap_or(0) {
                        0 => {
                            color.insert(k, 1);
                            stack.push((k, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(n, _)| *n == k).unwrap_or(0);
                            let mut cyc: Vec<String> = stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                            cyc.push(k.to_string());
                            let key = {
                                let mut s = cyc.clone();
                                s.sort();
                                s.join(",")
                            };
                            if reported.insert(key) {
                                // The edge node → k closes the cycle: k's reference to node.
                                let closing = self.refs.get(&(k.clone(), node.clone())).cloned();
                                let detail = match &closing {
                                    Some(_) => format!(
                                        "This reference makes {k} wait for {node}, which closes a cycle of tasks waiting for each other: {}.",
                                        cyc.join(" → ")
                                    ),
                                    None => format!("Tasks wait for each other in a cycle: {}.", cyc.join(" → ")),
                                };
                                let at = closing.or_else(|| {
                                    spec.tasks.get(k).and_then(|t| t.pos.clone()).map(|p| (p, String::new()))
                                });
                                self.err(
                                    at,
                                    "Dependency cycle",
                                    detail,
                                    Some("remove one of the inputs or depends_on entries that close the cycle".into()),
                                );
                            }
                        }
                        _ => {}
                    }
                } else {
                    color.insert(node, 2);
                }
            }
        }
        spec.edges = edges;
    }
}
