//! How `/openapi.json` says what authentication an operation needs: the security schemes, a
//! security requirement on every operation, and its 401 and 403 answers.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, Ref, ResponseBuilder};

const API_KEY: &str = "apiKey";
const JWT: &str = "jwt";

/// Describes the authentication of every operation of `openapi`, all of which sit behind
/// [`crate::authenticate_requests`] or check credentials themselves.
pub fn describe_security(openapi: &mut OpenApi, accepts_jwts: bool) {
    let components = openapi.components.get_or_insert_with(Components::new);
    let scopes = "Scopes: `read:<projection>` or `read:*` (query endpoints and tables), `status` \
                  (`GET /v1/projections`), `personal` (personal data in clear, each read audited; \
                  otherwise it is null); publishing: ";
    components.add_security_scheme(
        API_KEY,
        bearer(
            "elk_<key id>_<secret>",
            format!("An API key made by `eventline keys create`. {scopes}the key's `--types` patterns."),
        ),
    );
    let mut requirements = vec![SecurityRequirement::new(API_KEY, Vec::<String>::new())];
    if accepts_jwts {
        components.add_security_scheme(
            JWT,
            bearer(
                "JWT",
                format!(
                    "A JWT from the configured issuer, for the configured audience, signed by a key of its key set \
                     (`scope` or `scp` claim). {scopes}`publish:<pattern>`."
                ),
            ),
        );
        requirements.push(SecurityRequirement::new(JWT, Vec::<String>::new()));
    }
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            secure(operation, &requirements);
        }
    }
}

/// An `Authorization: Bearer` scheme with its token's shape.
fn bearer(format: &str, description: String) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format(format).description(Some(description)).build(),
    )
}

fn secure(operation: &mut Operation, requirements: &[SecurityRequirement]) {
    operation.security = Some(requirements.to_vec());
    let answers = [
        ("401", "No credentials, or credentials that are not valid (`WWW-Authenticate` says which)"),
        ("403", "The credentials lack the scope this needs (`WWW-Authenticate` names it)"),
    ];
    for (status, description) in answers {
        operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ProblemDocument"))).build(),
                )
                .into()
        });
    }
}
