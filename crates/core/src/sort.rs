//! One small sort for the few short lists the filter orders (a request's
//! deployments, a guardrail's findings, the headers it signs). The standard
//! library's sorts are fast on long slices and large in code: each element
//! type instantiates several kilobytes of driftsort and quicksort, which the
//! 1 MiB module budget cannot spend on lists of a handful of items.

/// Stable insertion sort of `v` by `less` (quadratic: for lists the
/// configuration bounds, such as an alias's deployments).
pub fn insertion_sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Stable merge sort by `less`, O(n log n), for lists a request's content
/// sizes (a guardrail's findings in a large prompt).
pub fn sorted_by<T, F: Fn(&T, &T) -> bool>(mut v: Vec<T>, less: &F) -> Vec<T> {
    if v.len() <= 16 {
        insertion_sort_by(&mut v, less);
        return v;
    }
    let right = v.split_off(v.len() / 2);
    let (left, right) = (sorted_by(v, less), sorted_by(right, less));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        // The right run's element goes first only when strictly less: stable.
        let from_right = match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => less(b, a),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        out.extend(if from_right { r.next() } else { l.next() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e')];
        insertion_sort_by(&mut v, |a, b| a.0 < b.0);
        assert_eq!(v, [(1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]);
        let long: Vec<(u32, usize)> = (0..1000).map(|i| ((i * 7919) % 13, i as usize)).collect();
        let mut expected = long.clone();
        expected.sort_by_key(|p| p.0);
        assert_eq!(sorted_by(long, &|a, b| a.0 < b.0), expected);
        let mut e: Vec<u8> = vec![];
        insertion_sort_by(&mut e, |a, b| a < b);
        assert!(e.is_empty());
    }
}
