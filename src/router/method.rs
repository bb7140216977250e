//! Request methods as a bit set, so an API's method (`GET`, …, or `ANY`) is tested with one AND.

/// A set of methods. A request's method is a one-bit set; `ANY` has every bit, including the
/// bit that stands for any method not named here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MethodSet(u8);

/// The methods that have a bit of their own, in bit order.
pub const NAMES: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
const OTHER: u8 = 1 << 7;

impl MethodSet {
    pub const ANY: MethodSet = MethodSet(u8::MAX);
    pub const GET: MethodSet = MethodSet(1);

    /// A configured `method` value: one of [`NAMES`] or `ANY` (case-insensitive).
    pub fn from_config(s: &str) -> Option<MethodSet> {
        if s.eq_ignore_ascii_case("ANY") {
            return Some(MethodSet::ANY);
        }
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| MethodSet(1 << i))
    }

    /// The method of a request; methods are case-sensitive (RFC 9110 §9.1).
    pub fn of_request(m: &str) -> MethodSet {
        NAMES
            .iter()
            .position(|n| *n == m)
            .map_or(MethodSet(OTHER), |i| MethodSet(1 << i))
    }

    pub fn contains(self, request: MethodSet) -> bool {
        self.0 & request.0 != 0
    }

    pub fn is_any(self) -> bool {
        self == MethodSet::ANY
    }

    /// The configured spelling: a method name or `ANY`.
    pub fn name(self) -> &'static str {
        if self.is_any() {
            return "ANY";
        }
        NAMES
            .get(self.0.trailing_zeros() as usize)
            .copied()
            .unwrap_or("OTHER")
    }

    /// The values accepted by [`MethodSet::from_config`], for error messages.
    pub fn config_values() -> String {
        let mut v = NAMES.join(" | ");
        v.push_str(" | ANY");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let get = MethodSet::from_config("get").unwrap();
        assert!(get.contains(MethodSet::of_request("GET")));
        assert!(!get.contains(MethodSet::of_request("get")));
        assert!(!get.contains(MethodSet::of_request("HEAD")));
        assert!(MethodSet::ANY.contains(MethodSet::of_request("PROPFIND")));
        assert!(!get.contains(MethodSet::of_request("PROPFIND")));
        assert_eq!(MethodSet::from_config("patch").unwrap().name(), "PATCH");
        assert_eq!(MethodSet::from_config("FETCH"), None);
    }
}
