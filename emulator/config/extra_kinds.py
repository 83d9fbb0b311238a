"""Schemas for kinds the bundled Kubernetes OpenAPI schemas lack.

`networking.k8s.io/v1beta1` Ingress was removed in Kubernetes 1.22 but appears in the seed
document; `cloud.google.com/v1` BackendConfig is a GKE custom resource. Both are written
here as pydantic models following the upstream definitions; unknown fields are errors
except where the upstream type is free-form.
"""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulator.config.types import WholeNumber

Int = Annotated[int, WholeNumber]
IntOrString = Annotated[int, WholeNumber] | str


class _Strict(BaseModel):
    """Unknown fields are errors (as `kubectl --validate=strict`)."""

    model_config = ConfigDict(extra="forbid")


class ObjectMeta(_Strict):
    """metav1.ObjectMeta."""

    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: Int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: Int | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[dict[str, Any]] | None = None
    managedFields: list[dict[str, Any]] | None = None


class IngressBackendV1beta1(_Strict):
    """networking.k8s.io/v1beta1 IngressBackend: a Service name and port, or a resource."""

    serviceName: str | None = None
    servicePort: IntOrString | None = None
    resource: dict[str, Any] | None = None


class HTTPIngressPathV1beta1(_Strict):
    """One path -> backend mapping."""

    path: str | None = None
    pathType: Literal["Exact", "Prefix", "ImplementationSpecific"] | None = None
    backend: IngressBackendV1beta1


class HTTPIngressRuleValueV1beta1(_Strict):
    """The HTTP paths of a rule."""

    paths: list[HTTPIngressPathV1beta1]


class IngressRuleV1beta1(_Strict):
    """A host rule."""

    host: str | None = None
    http: HTTPIngressRuleValueV1beta1 | None = None


class IngressTLSV1beta1(_Strict):
    """TLS hosts and the Secret holding their certificate."""

    hosts: list[str] | None = None
    secretName: str | None = None


class IngressSpecV1beta1(_Strict):
    """networking.k8s.io/v1beta1 IngressSpec."""

    ingressClassName: str | None = None
    backend: IngressBackendV1beta1 | None = None
    tls: list[IngressTLSV1beta1] | None = None
    rules: list[IngressRuleV1beta1] | None = None


class IngressV1beta1(_Strict):
    """networking.k8s.io/v1beta1 Ingress."""

    apiVersion: Literal["networking.k8s.io/v1beta1", "extensions/v1beta1"]
    kind: Literal["Ingress"]
    metadata: ObjectMeta
    spec: IngressSpecV1beta1 | None = None
    status: dict[str, Any] | None = None


class HealthCheckConfig(_Strict):
    """BackendConfig healthCheck: the load balancer's probe of the backends."""

    checkIntervalSec: Int | None = Field(default=None, ge=1)
    timeoutSec: Int | None = Field(default=None, ge=1)
    healthyThreshold: Int | None = Field(default=None, ge=1)
    unhealthyThreshold: Int | None = Field(default=None, ge=1)
    type: Literal["HTTP", "HTTPS", "HTTP2"] | None = None
    requestPath: str | None = None
    port: Int | None = Field(default=None, ge=1, le=65535)


class SecurityPolicyConfig(_Strict):
    """BackendConfig securityPolicy: a Cloud Armor policy by name."""

    name: str


class OAuthClientCredentials(_Strict):
    """IAP OAuth client, from a Secret."""

    secretName: str
    clientID: str | None = None
    clientSecret: str | None = None


class IAPConfig(_Strict):
    """BackendConfig iap: Identity-Aware Proxy."""

    enabled: bool
    oauthclientCredentials: OAuthClientCredentials | None = None


class ConnectionDrainingConfig(_Strict):
    """BackendConfig connectionDraining."""

    drainingTimeoutSec: Int | None = Field(default=None, ge=0)


class SessionAffinityConfig(_Strict):
    """BackendConfig sessionAffinity."""

    affinityType: Literal["NONE", "CLIENT_IP", "GENERATED_COOKIE"] | None = None
    affinityCookieTtlSec: Int | None = Field(default=None, ge=0)


class HeadersConfig(_Strict):
    """Custom request or response headers, as `Name: value` strings."""

    headers: list[str] | None = None


class LoggingConfig(_Strict):
    """BackendConfig logging."""

    enable: bool | None = None
    sampleRate: float | None = Field(default=None, ge=0, le=1)


class BackendConfigSpec(_Strict):
    """cloud.google.com/v1 BackendConfigSpec (CDN and outlier detection kept free-form)."""

    iap: IAPConfig | None = None
    cdn: dict[str, Any] | None = None
    securityPolicy: SecurityPolicyConfig | None = None
    timeoutSec: Int | None = Field(default=None, ge=1)
    connectionDraining: ConnectionDrainingConfig | None = None
    sessionAffinity: SessionAffinityConfig | None = None
    customRequestHeaders: HeadersConfig | None = None
    customResponseHeaders: HeadersConfig | None = None
    healthCheck: HealthCheckConfig | None = None
    logging: LoggingConfig | None = None
    outlierDetection: dict[str, Any] | None = None
    maxRatePerEndpoint: float | None = None


class BackendConfig(_Strict):
    """cloud.google.com/v1 BackendConfig (GKE Ingress backend settings)."""

    apiVersion: Literal["cloud.google.com/v1", "cloud.google.com/v1beta1"]
    kind: Literal["BackendConfig"]
    metadata: ObjectMeta
    spec: BackendConfigSpec = Field(default_factory=BackendConfigSpec)
    status: dict[str, Any] | None = None


class SecurityPolicyMatch(_Strict):
    """Cloud Armor's basic match: source IP ranges (`*` for every address)."""

    srcIpRanges: list[str] = Field(min_length=1, max_length=10)

    @field_validator("srcIpRanges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for r in v:
            if r != "*":
                try:
                    ipaddress.ip_network(r, strict=False)
                except ValueError:
                    raise ValueError(f"{r!r} is not an IP range (CIDR) or '*'") from None
        return v


ArmorAction = Literal["allow", "deny-403", "deny-404", "deny-502"]


class SecurityPolicyRule(_Strict):
    """One rule: the lowest priority number that matches decides; `preview` only logs."""

    priority: Int = Field(ge=0, le=2147483646)
    action: ArmorAction
    match: SecurityPolicyMatch
    preview: bool = False
    description: str | None = None


class SecurityPolicySpec(_Strict):
    """Rules and the default rule's action (priority 2147483647)."""

    description: str | None = None
    rules: list[SecurityPolicyRule] = Field(default_factory=list)
    defaultRuleAction: ArmorAction = "allow"

    @field_validator("rules")
    @classmethod
    def _unique_priorities(cls, v: list[SecurityPolicyRule]) -> list[SecurityPolicyRule]:
        seen: set[int] = set()
        for r in v:
            if r.priority in seen:
                raise ValueError(f"priority {r.priority} is used by two rules")
            seen.add(r.priority)
        return v


class SecurityPolicy(_Strict):
    """kubemu.io/v1 SecurityPolicy: a Cloud Armor security policy (a GCP resource in GKE),
    named by BackendConfig `securityPolicy.name`."""

    apiVersion: Literal["kubemu.io/v1"]
    kind: Literal["SecurityPolicy"]
    metadata: ObjectMeta
    spec: SecurityPolicySpec = Field(default_factory=SecurityPolicySpec)
