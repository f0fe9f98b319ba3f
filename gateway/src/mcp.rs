//! The tool registry over the Model Context Protocol: streamable HTTP at `/v1/mcp` behind the
//! same bearer-token authentication (and rate limit) as the rest of `/v1`, and stdio for
//! `plasma mcp`. Every call acts on the caller's tenant; `read` tools need a role that may
//! query, `write` tools one that may run commands. The tools run through a [`ToolCaller`]
//! (the agent worker's toolbox, injected by the binary).

use std::sync::Arc;

use async_trait::async_trait;
use plasma_domain::agent::tools::{self, ToolAccess};
use plasma_domain::TenantId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::Value;

use crate::auth::{Commands, Permission as _, Principal, Queries};

/// Runs one tool of the registry for a tenant; `Err` is a message for the caller (the tool ran
/// and failed, or refused its input).
#[async_trait]
pub trait ToolCaller: Send + Sync + std::fmt::Debug {
    async fn call(&self, tenant: &TenantId, tool: &str, input: Value) -> Result<Value, String>;
}

/// The MCP server: lists the registry and calls its tools for an authenticated caller.
#[derive(Debug, Clone)]
pub struct McpServer {
    caller: Arc<dyn ToolCaller>,
    /// The caller over stdio (its token was checked at start); over HTTP each request carries
    /// its own, put there by the authentication middleware.
    fixed: Option<Principal>,
}

impl McpServer {
    pub fn new(caller: Arc<dyn ToolCaller>, fixed: Option<Principal>) -> Self {
        Self { caller, fixed }
    }

    fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>().cloned())
            .or_else(|| self.fixed.clone())
    }

    fn tools() -> Vec<Tool> {
        tools::all()
            .iter()
            .map(|spec| {
                let schema: JsonObject = match &spec.input_schema {
                    Value::Object(map) => map.clone(),
                    _ => JsonObject::new(),
                };
                let mut tool = Tool::new(spec.name, spec.description, Arc::new(schema));
                if let Value::Object(output) = &spec.output_schema {
                    tool = tool.with_raw_output_schema(Arc::new(output.clone()));
                }
                tool.with_annotations(
                    ToolAnnotations::new().read_only(spec.access == ToolAccess::Read),
                )
            })
            .collect()
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("plasma", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Plasma's tool registry: brand statistics and mentions, research search, text \
                 generation, allow-listed HTTP and the content drafts' commands, all on your \
                 token's tenant.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(principal) = self.principal(&context) else {
            return Err(McpError::invalid_request("not authenticated", None));
        };
        let Some(spec) = tools::spec(&request.name) else {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool `{}`; the registry has: {}",
                    request.name,
                    tools::names().join(", ")
                ),
                None,
            ));
        };
        let allowed = match spec.access {
            ToolAccess::Read => principal.has(Queries::granted_to),
            ToolAccess::Write => principal.has(Commands::granted_to),
        };
        if !allowed {
            let needs = match spec.access {
                ToolAccess::Read => Queries::NAME,
                ToolAccess::Write => Commands::NAME,
            };
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "`{}` needs the {needs} permission",
                spec.name
            ))])
            .into());
        }
        let input = Value::Object(request.arguments.unwrap_or_default());
        tracing::info!(plasma.tenant = %principal.tenant, tool = spec.name, "mcp tool call");
        Ok(
            match self.caller.call(&principal.tenant, spec.name, input).await {
                Ok(output) => CallToolResult::structured(output),
                Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
            }
            .into(),
        )
    }
}

/// The streamable-HTTP service: stateless, JSON answers (no long-lived streams to hold a
/// shutdown up). Any Host is accepted: every request needs a bearer token anyway, which a
/// DNS-rebinding page cannot add.
pub fn http_service(
    caller: Arc<dyn ToolCaller>,
) -> StreamableHttpService<McpServer, NeverSessionManager> {
    let server = McpServer::new(caller, None);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .disable_allowed_hosts(),
    )
}

/// Serves `server` on stdin and stdout until the client closes them.
pub async fn serve_stdio(server: McpServer) -> anyhow::Result<()> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("starting MCP on stdio: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("serving MCP on stdio: {e}"))?;
    Ok(())
}
