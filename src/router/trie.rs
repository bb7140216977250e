//! The immutable radix trie over the literal parts of one host group's paths.
//!
//! Built once per configuration: an owned, mutable [`Builder`] tree is filled with every
//! route's literal (the exact, prefix and priority-prefix literals, and the literal prefix of
//! each regex-tier pattern), then frozen into a bumpalo arena where every node is plain data
//! (byte slices and `Copy` entries, nothing to drop). A lookup walks the path once from the
//! root and sees, in order of depth, every node whose key is a prefix of the path.

use bumpalo::Bump;

use super::method::MethodSet;

/// One route attached to a node: its index in the group's route list and its methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub route: u32,
    pub methods: MethodSet,
}

/// What a node holds for each tier. `regex` is sorted by route index (= configuration order).
pub struct Node<'a> {
    label: &'a [u8],
    first: &'a [u8],
    children: &'a [Node<'a>],
    pub exact: &'a [Entry],
    pub priority: &'a [Entry],
    pub prefix: &'a [Entry],
    pub regex: &'a [Entry],
}

/// Which list of a node a route goes to.
#[derive(Clone, Copy, Debug)]
pub enum Slot {
    Exact,
    Priority,
    Prefix,
    Regex,
}

/// The arena. After [`Trie::new`] returns, nothing ever calls a method of the `Bump` again:
/// it is only kept alive (and finally dropped) for the nodes that point into it.
struct Arena(Bump);

// SAFETY: `Bump` is not `Sync` because `&Bump` allows allocation through a shared reference.
// `Arena` is private to this module and only ever reached through self_cell's owner, which
// this module never borrows after construction, so no two threads can allocate at once; the
// nodes themselves are immutable plain data.
unsafe impl Sync for Arena {}

type Root<'a> = &'a Node<'a>;

self_cell::self_cell!(
    struct Cell {
        owner: Arena,
        #[covariant]
        dependent: Root,
    }
);

pub struct Trie {
    cell: Cell,
}

impl Trie {
    pub fn new(builder: Builder) -> Trie {
        let cell = Cell::new(Arena(Bump::new()), |arena| freeze(&builder.root, &arena.0));
        Trie { cell }
    }

    /// Calls `visit(depth, node)` for every node whose key is a prefix of `path`, shallowest
    /// first; `depth` is the key's length, so `depth == path.len()` means the key is `path`.
    #[inline]
    pub fn walk<'s>(&'s self, path: &[u8], visit: impl FnMut(usize, &'s Node<'s>)) {
        self.walk_impl::<false>(path, visit)
    }

    /// [`Trie::walk`] for a trie of lowercase keys, comparing the path ignoring ASCII case.
    #[inline]
    pub fn walk_folded<'s>(&'s self, path: &[u8], visit: impl FnMut(usize, &'s Node<'s>)) {
        self.walk_impl::<true>(path, visit)
    }

    #[inline]
    fn walk_impl<'s, const FOLD: bool>(
        &'s self,
        path: &[u8],
        mut visit: impl FnMut(usize, &'s Node<'s>),
    ) {
        let mut node: &'s Node<'s> = self.cell.borrow_dependent();
        let mut depth = 0;
        loop {
            visit(depth, node);
            let Some(&b) = path.get(depth) else { return };
            let b = if FOLD { b.to_ascii_lowercase() } else { b };
            let Some(i) = child_index(node.first, b) else {
                return;
            };
            let child = &node.children[i];
            let rest = &path[depth..];
            let matched = rest.len() >= child.label.len()
                && label_eq::<FOLD>(&rest[..child.label.len()], child.label);
            if !matched {
                return;
            }
            depth += child.label.len();
            node = child;
        }
    }

    /// Bytes the arena holds, for the docs and benchmarks.
    pub fn arena_bytes(&self) -> usize {
        self.cell.borrow_owner().0.allocated_bytes()
    }
}

/// Edge labels are short: a byte loop beats a call to `memcmp`. The first byte is already
/// known to match.
#[inline]
fn label_eq<const FOLD: bool>(a: &[u8], label: &[u8]) -> bool {
    a.iter().zip(label).skip(1).all(|(&x, &y)| {
        if FOLD {
            x.to_ascii_lowercase() == y
        } else {
            x == y
        }
    })
}

#[inline]
fn child_index(first: &[u8], b: u8) -> Option<usize> {
    if first.len() <= 8 {
        first.iter().position(|&f| f == b)
    } else {
        first.binary_search(&b).ok()
    }
}

fn freeze<'a>(n: &BuildNode, bump: &'a Bump) -> &'a Node<'a> {
    bump.alloc(freeze_node(n, bump))
}

fn freeze_node<'a>(n: &BuildNode, bump: &'a Bump) -> Node<'a> {
    Node {
        label: bump.alloc_slice_copy(&n.label),
        first: bump.alloc_slice_fill_iter(n.children.iter().map(|c| c.label[0])),
        children: bump.alloc_slice_fill_iter(n.children.iter().map(|c| freeze_node(c, bump))),
        exact: bump.alloc_slice_copy(&n.exact),
        priority: bump.alloc_slice_copy(&n.priority),
        prefix: bump.alloc_slice_copy(&n.prefix),
        regex: bump.alloc_slice_copy(&n.regex),
    }
}

#[derive(Default)]
struct BuildNode {
    label: Vec<u8>,
    /// Sorted by first label byte; labels of siblings never share a first byte.
    children: Vec<BuildNode>,
    exact: Vec<Entry>,
    priority: Vec<Entry>,
    prefix: Vec<Entry>,
    regex: Vec<Entry>,
}

/// The mutable tree a [`Trie`] is frozen from.
#[derive(Default)]
pub struct Builder {
    root: BuildNode,
}

impl Builder {
    /// Adds a route under `key`. Routes must be added in route-index order.
    pub fn insert(&mut self, key: &[u8], slot: Slot, entry: Entry) {
        let node = insert(&mut self.root, key);
        let list = match slot {
            Slot::Exact => &mut node.exact,
            Slot::Priority => &mut node.priority,
            Slot::Prefix => &mut node.prefix,
            Slot::Regex => &mut node.regex,
        };
        list.push(entry);
    }
}

fn insert<'n>(node: &'n mut BuildNode, key: &[u8]) -> &'n mut BuildNode {
    if key.is_empty() {
        return node;
    }
    let pos = node.children.binary_search_by_key(&key[0], |c| c.label[0]);
    let i = match pos {
        Ok(i) => i,
        Err(i) => {
            node.children.insert(
                i,
                BuildNode {
                    label: key.to_vec(),
                    ..BuildNode::default()
                },
            );
            return &mut node.children[i];
        }
    };
    let child = &mut node.children[i];
    let common = child
        .label
        .iter()
        .zip(key)
        .take_while(|(a, b)| a == b)
        .count();
    if common < child.label.len() {
        // Split the edge: child becomes the lower half of a new node at `common`.
        let tail = child.label.split_off(common);
        let mut lower = std::mem::take(child);
        child.label = std::mem::take(&mut lower.label);
        lower.label = tail;
        child.children.push(lower);
    }
    insert(child, &key[common..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(route: u32) -> Entry {
        Entry {
            route,
            methods: MethodSet::ANY,
        }
    }

    #[test]
    fn walk_visits_every_prefix_node() {
        let mut b = Builder::default();
        for (i, k) in ["/user", "/users", "/u", "/user/x", "/a", ""]
            .iter()
            .enumerate()
        {
            b.insert(k.as_bytes(), Slot::Prefix, e(i as u32));
        }
        let t = Trie::new(b);
        let mut seen = Vec::new();
        t.walk(b"/user/xyz", |d, n| {
            seen.push((d, n.prefix.iter().map(|e| e.route).collect::<Vec<_>>()))
        });
        let with: Vec<_> = seen.into_iter().filter(|(_, r)| !r.is_empty()).collect();
        assert_eq!(
            with,
            vec![(0, vec![5]), (2, vec![2]), (5, vec![0]), (7, vec![3])]
        );
        let mut deepest = 0;
        t.walk(b"/us", |d, _| deepest = d);
        assert_eq!(deepest, 2, "a walk stops at the last full node");
        assert!(t.arena_bytes() > 0);
    }

    #[test]
    fn folded_walk_ignores_ascii_case() {
        let mut b = Builder::default();
        b.insert(b"/api/v", Slot::Regex, e(1));
        b.insert(b"/a", Slot::Regex, e(0));
        let t = Trie::new(b);
        let mut seen = Vec::new();
        t.walk_folded(b"/API/V1", |_, n| {
            seen.extend(n.regex.iter().map(|e| e.route))
        });
        assert_eq!(seen, vec![0, 1]);
        seen.clear();
        t.walk(b"/API/V1", |_, n| {
            seen.extend(n.regex.iter().map(|e| e.route))
        });
        assert!(seen.is_empty());
    }

    #[test]
    fn many_children_use_binary_search() {
        let mut b = Builder::default();
        for c in b'a'..=b'z' {
            b.insert(&[b'/', c], Slot::Exact, e(c as u32));
        }
        let t = Trie::new(b);
        for c in b'a'..=b'z' {
            let mut hit = None;
            t.walk(&[b'/', c], |d, n| {
                if d == 2 {
                    hit = n.exact.first().map(|e| e.route)
                }
            });
            assert_eq!(hit, Some(c as u32));
        }
    }
}
