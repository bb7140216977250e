//! Placeholder until the params stage lands.
use crate::config::Param;
use crate::error::GatewayError;
use crate::http::head::RequestHead;
use crate::router::Captures;

pub struct ParamInput<'a> {
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub query: Option<&'a str>,
    pub path: &'a str,
    pub captures: &'a Captures<'a>,
}

#[derive(Default)]
pub struct ParamValues {}

impl ParamValues {
    pub fn clear(&mut self) {}
}

pub fn apply(
    _params: &[Param],
    _input: &ParamInput<'_>,
    _out: &mut ParamValues,
) -> Result<(), GatewayError> {
    Ok(())
}

impl ParamValues {
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        std::iter::empty()
    }
}

pub fn backend_target(p: &Param) -> (&str, crate::config::Location) {
    (
        p.backend_name.as_deref().unwrap_or(&p.name),
        p.backend_location.unwrap_or(p.location),
    )
}

pub fn is_moved(p: &Param) -> bool {
    p.backend_name.is_some() || p.backend_location.is_some_and(|l| l != p.location)
}
