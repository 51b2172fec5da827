//! The dependency graph: resources are vertices, references are edges.
//!
//! The graph knows addresses and edges only; it knows nothing of plans, state or clouds.
//! It is built in small steps (add vertices, connect references, restrict to targets),
//! each checked on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::address::Address;

/// Why a graph cannot be built. These are engine errors: users cannot write references,
/// so hitting one means a blueprint bug.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphError {
    /// Resources refer to each other in a loop.
    #[error("dependency cycle: {}", .0.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<Address>),
    /// A reference names a resource that does not exist.
    #[error("`{from}` refers to `{to}`, which does not exist")]
    MissingReference {
        /// The referring resource.
        from: Address,
        /// The missing resource.
        to: Address,
    },
    /// The same address appears twice.
    #[error("resource `{0}` is declared twice")]
    Duplicate(Address),
}

/// A directed acyclic graph of resources. An edge `a -> b` means `b` depends on `a`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: DiGraph<Address, ()>,
    /// Sorted, so a sorted selection maps to vertices in one merge pass.
    index: BTreeMap<Address, NodeIndex>,
}

impl Graph {
    /// Builds a graph from `(address, dependencies)` pairs and checks it is acyclic
    /// and that every dependency exists.
    pub fn build<I>(nodes: I) -> Result<Graph, GraphError>
    where
        I: IntoIterator<Item = (Address, Vec<Address>)>,
    {
        let nodes: Vec<_> = nodes.into_iter().collect();
        let mut graph = Graph::default();
        for (addr, _) in &nodes {
            graph.add_vertex(addr.clone())?;
        }
        for (addr, deps) in &nodes {
            for dep in deps {
                graph.connect(dep, addr)?;
            }
        }
        graph.check_acyclic()?;
        Ok(graph)
    }

    fn add_vertex(&mut self, addr: Address) -> Result<(), GraphError> {
        if self.index.contains_key(&addr) {
            return Err(GraphError::Duplicate(addr));
        }
        let ix = self.g.add_node(addr.clone());
        self.index.insert(addr, ix);
        Ok(())
    }

    fn connect(&mut self, dep: &Address, dependent: &Address) -> Result<(), GraphError> {
        let to = self.index[dependent];
        let from = *self
            .index
            .get(dep)
            .ok_or_else(|| GraphError::MissingReference {
                from: dependent.clone(),
                to: dep.clone(),
            })?;
        if self.g.find_edge(from, to).is_none() {
            self.g.add_edge(from, to, ());
        }
        Ok(())
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        for scc in tarjan_scc(&self.g) {
            let self_loop = scc.len() == 1 && self.g.find_edge(scc[0], scc[0]).is_some();
            if scc.len() > 1 || self_loop {
                let mut cycle: Vec<Address> = scc.iter().map(|ix| self.g[*ix].clone()).collect();
                cycle.sort();
                let first = cycle[0].clone();
                cycle.push(first);
                return Err(GraphError::Cycle(cycle));
            }
        }
        Ok(())
    }

    /// The same vertices with every edge turned around (destroy order: dependents first).
    pub fn reversed(&self) -> Graph {
        let mut g = self.g.clone();
        g.reverse();
        Graph {
            g,
            index: self.index.clone(),
        }
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// Whether the graph has no vertices.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Whether `addr` is a vertex.
    pub fn contains(&self, addr: &Address) -> bool {
        self.index.contains_key(addr)
    }

    /// Every vertex, sorted.
    pub fn addresses(&self) -> Vec<Address> {
        self.index.keys().cloned().collect()
    }

    /// What `addr` depends on directly, sorted.
    pub fn dependencies(&self, addr: &Address) -> Vec<Address> {
        self.neighbors(addr, Direction::Incoming)
    }

    /// What depends on `addr` directly, sorted.
    pub fn dependents(&self, addr: &Address) -> Vec<Address> {
        self.neighbors(addr, Direction::Outgoing)
    }

    /// What depends on `addr` directly, unsorted and without copies (for hot paths).
    pub fn dependents_iter<'a>(&'a self, addr: &Address) -> impl Iterator<Item = &'a Address> {
        self.neighbors_iter(addr, Direction::Outgoing)
    }

    /// What `addr` depends on directly, unsorted and without copies (for hot paths).
    pub fn dependencies_iter<'a>(&'a self, addr: &Address) -> impl Iterator<Item = &'a Address> {
        self.neighbors_iter(addr, Direction::Incoming)
    }

    fn neighbors_iter<'a>(
        &'a self,
        addr: &Address,
        dir: Direction,
    ) -> impl Iterator<Item = &'a Address> {
        let ix = self.index.get(addr).copied();
        ix.into_iter()
            .flat_map(move |ix| self.g.neighbors_directed(ix, dir))
            .map(|n| &self.g[n])
    }

    fn neighbors(&self, addr: &Address, dir: Direction) -> Vec<Address> {
        let Some(ix) = self.index.get(addr) else {
            return Vec::new();
        };
        let mut v: Vec<_> = self
            .g
            .neighbors_directed(*ix, dir)
            .map(|n| self.g[n].clone())
            .collect();
        v.sort();
        v
    }

    /// A topological order (dependencies first); ties broken by address for stable output.
    pub fn topo_order(&self) -> Vec<Address> {
        let mut indegree: HashMap<NodeIndex, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.neighbors_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BTreeSet<(Address, NodeIndex)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| (self.g[*n].clone(), *n))
            .collect();
        let mut out = Vec::with_capacity(self.len());
        while let Some(first) = ready.pop_first() {
            out.push(first.0);
            for next in self.g.neighbors_directed(first.1, Direction::Outgoing) {
                let d = indegree.get_mut(&next).expect("vertex");
                *d -= 1;
                if *d == 0 {
                    ready.insert((self.g[next].clone(), next));
                }
            }
        }
        out
    }

    /// The targets and everything they depend on, transitively (`--target`).
    pub fn with_dependencies(&self, targets: &[Address]) -> BTreeSet<Address> {
        self.closure(targets, Direction::Incoming)
    }

    /// The targets and everything that depends on them, transitively (destroy with `--target`).
    pub fn with_dependents(&self, targets: &[Address]) -> BTreeSet<Address> {
        self.closure(targets, Direction::Outgoing)
    }

    fn closure(&self, targets: &[Address], dir: Direction) -> BTreeSet<Address> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = targets
            .iter()
            .filter_map(|t| self.index.get(t).copied())
            .collect();
        while let Some(ix) = stack.pop() {
            if seen.insert(self.g[ix].clone()) {
                stack.extend(self.g.neighbors_directed(ix, dir));
            }
        }
        seen
    }

    /// The walker's view of `selected` (vertices numbered by their position in it):
    /// each one's dependents among them, as offsets into one list (`starts[i]..starts[i+1]`
    /// indexes `list`), and how many of its dependencies are among them. A selected
    /// address that is not a vertex has neither. `selected` must be sorted; the walker
    /// builds this on every walk, before the first vertex starts.
    pub(crate) fn walk_adjacency(&self, selected: &[&Address]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        const NONE: u32 = u32::MAX;
        let mut position = vec![NONE; self.g.node_count()];
        // `selected` and `index` are both sorted: one merge pass, no lookups.
        let mut known = self.index.iter().peekable();
        let nodes: Vec<Option<NodeIndex>> = selected
            .iter()
            .enumerate()
            .map(|(i, a)| {
                while known.next_if(|(k, _)| *k < *a).is_some() {}
                let ix = known.next_if(|(k, _)| *k == *a).map(|(_, ix)| *ix);
                if let Some(ix) = ix {
                    position[ix.index()] = i as u32;
                }
                ix
            })
            .collect();
        let mut starts = Vec::with_capacity(selected.len() + 1);
        let mut list = Vec::new();
        let mut pending = Vec::with_capacity(selected.len());
        for ix in nodes {
            starts.push(list.len() as u32);
            let Some(ix) = ix else {
                pending.push(0);
                continue;
            };
            list.extend(
                self.g
                    .neighbors_directed(ix, Direction::Outgoing)
                    .map(|n| position[n.index()])
                    .filter(|p| *p != NONE),
            );
            pending.push(
                self.g
                    .neighbors_directed(ix, Direction::Incoming)
                    .filter(|n| position[n.index()] != NONE)
                    .count() as u32,
            );
        }
        starts.push(list.len() as u32);
        (starts, list, pending)
    }

    /// For each vertex, the longest expected duration from its start to the end of any
    /// chain that depends on it (itself included). The walker starts the largest first.
    pub fn remaining_critical_path(
        &self,
        duration: impl Fn(&Address) -> Duration,
    ) -> BTreeMap<Address, Duration> {
        let mut out: BTreeMap<Address, Duration> = BTreeMap::new();
        for addr in self.topo_order().into_iter().rev() {
            let tail = self
                .dependents(&addr)
                .iter()
                .map(|d| out[d])
                .max()
                .unwrap_or_default();
            let own = duration(&addr);
            out.insert(addr, own + tail);
        }
        out
    }

    /// The critical path: the chain (dependencies first) with the longest total `duration`,
    /// and that total, the least time a walk can take. Ties go to the smaller address; the
    /// chain stops where only zero-duration dependents remain.
    pub fn critical_path(
        &self,
        duration: impl Fn(&Address) -> Duration,
    ) -> (Duration, Vec<Address>) {
        let remaining = self.remaining_critical_path(&duration);
        // The longest remaining chain, smallest address first among equals.
        let longest = |it: &mut dyn Iterator<Item = &Address>| {
            it.filter(|a| remaining[*a] > Duration::ZERO)
                .min_by(|a, b| remaining[*b].cmp(&remaining[*a]).then_with(|| a.cmp(b)))
                .cloned()
        };
        let Some(mut at) = longest(&mut remaining.keys()) else {
            return (Duration::ZERO, Vec::new());
        };
        let total = remaining[&at];
        let mut chain = vec![at.clone()];
        loop {
            let next = longest(&mut self.dependents_iter(&at));
            let Some(next) = next else { break };
            chain.push(next.clone());
            at = next;
        }
        (total, chain)
    }

    /// Graphviz DOT, one edge per line, dependencies pointing at dependents.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph flyteinfra {\n  rankdir = LR;\n");
        for a in self.addresses() {
            let _ = writeln!(s, "  \"{a}\";");
        }
        for a in self.addresses() {
            for d in self.dependents(&a) {
                let _ = writeln!(s, "  \"{a}\" -> \"{d}\";");
            }
        }
        s.push_str("}\n");
        s
    }

    /// A Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let ids: BTreeMap<Address, usize> = self
            .addresses()
            .into_iter()
            .enumerate()
            .map(|(i, a)| (a, i))
            .collect();
        let mut s = String::from("flowchart LR\n");
        for (a, i) in &ids {
            let _ = writeln!(s, "  n{i}[\"{a}\"]");
        }
        for (a, i) in &ids {
            for d in self.dependents(a) {
                let _ = writeln!(s, "  n{i} --> n{}", ids[&d]);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn chain() -> Graph {
        Graph::build([
            (a("t.vpc"), vec![]),
            (a("t.subnet"), vec![a("t.vpc")]),
            (a("t.db"), vec![a("t.subnet"), a("t.vpc")]),
            (a("t.bucket"), vec![]),
        ])
        .unwrap()
    }

    #[test]
    fn topo_order_puts_dependencies_first() {
        let order = chain().topo_order();
        let pos = |s: &str| order.iter().position(|x| *x == a(s)).unwrap();
        assert!(pos("t.vpc") < pos("t.subnet"));
        assert!(pos("t.subnet") < pos("t.db"));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn cycle_is_an_error_naming_the_loop() {
        let err = Graph::build([
            (a("t.x"), vec![a("t.y")]),
            (a("t.y"), vec![a("t.x")]),
            (a("t.z"), vec![]),
        ])
        .unwrap_err();
        assert_eq!(err, GraphError::Cycle(vec![a("t.x"), a("t.y"), a("t.x")]));
        assert!(err.to_string().contains("`t.x` -> `t.y` -> `t.x`"));
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let err = Graph::build([(a("t.x"), vec![a("t.x")])]).unwrap_err();
        assert!(matches!(err, GraphError::Cycle(_)));
    }

    #[test]
    fn missing_reference_is_an_error() {
        let err = Graph::build([(a("t.x"), vec![a("t.nope")])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`t.x` refers to `t.nope`, which does not exist"
        );
    }

    #[test]
    fn duplicate_is_an_error() {
        let err = Graph::build([(a("t.x"), vec![]), (a("t.x"), vec![])]).unwrap_err();
        assert_eq!(err, GraphError::Duplicate(a("t.x")));
    }

    #[test]
    fn target_closure_follows_dependencies_only() {
        let g = chain();
        let set = g.with_dependencies(&[a("t.subnet")]);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![a("t.subnet"), a("t.vpc")]
        );
        let set = g.with_dependents(&[a("t.subnet")]);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![a("t.db"), a("t.subnet")]
        );
    }

    #[test]
    fn critical_path_sums_the_longest_chain() {
        let g = chain();
        let d = |x: &Address| Duration::from_secs(if x.name() == "db" { 100 } else { 1 });
        let cp = g.remaining_critical_path(d);
        assert_eq!(cp[&a("t.vpc")], Duration::from_secs(102));
        assert_eq!(cp[&a("t.subnet")], Duration::from_secs(101));
        assert_eq!(cp[&a("t.bucket")], Duration::from_secs(1));
        let (total, chain) = g.critical_path(d);
        assert_eq!(total, Duration::from_secs(102));
        assert_eq!(chain, vec![a("t.vpc"), a("t.subnet"), a("t.db")]);
        let (total, chain) = g.critical_path(|_| Duration::ZERO);
        assert_eq!((total, chain), (Duration::ZERO, vec![]));
    }

    #[test]
    fn dot_and_mermaid_list_every_edge() {
        let g = chain();
        let dot = g.to_dot();
        assert!(dot.contains("\"t.vpc\" -> \"t.subnet\";"));
        assert!(dot.contains("\"t.subnet\" -> \"t.db\";"));
        let mm = g.to_mermaid();
        assert!(mm.starts_with("flowchart LR\n"));
        assert_eq!(mm.matches("-->").count(), 3);
    }
}
