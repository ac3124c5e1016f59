package platform

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/datastores"
	"pressroom.dev/stacks"
)

// ArgsFromConfig maps the typed stack configuration onto PlatformArgs.
// ready is the cluster layer's readiness gate (may be empty in render mode).
func ArgsFromConfig(cfg *stacks.Config, ready ...pulumi.Resource) *PlatformArgs {
	return &PlatformArgs{
		Domain:             cfg.Domain,
		Nodes:              cfg.Cluster.Nodes,
		ACMEEmail:          cfg.ACME.Email,
		ACMEServer:         cfg.ACME.Server,
		ACMECABundle:       cfg.ACME.CABundle,
		Issuer:             cfg.ACME.Issuer,
		InstallCertManager: cfg.CertManager.Install,
		CertManagerVersion: cfg.CertManager.Version,
		CertManagerChart:   cfg.CertManager.Chart,
		CertManagerImages:  cfg.CertManager.Images,
		App: AppSettings{
			GoogleClientID:     cfg.App.GoogleClientID,
			GoogleLoginEnabled: cfg.App.GoogleLoginEnabled,
			OIDCIssuerURL:      cfg.App.OIDCIssuerURL,
			EmailFrom:          cfg.App.EmailFrom,
			AdminEmails:        cfg.App.AdminEmails,
			NotifyEmail:        cfg.App.NotifyEmail,
			TrustedCABundle:    cfg.App.TrustedCABundle,
		},
		GoogleClientSecret: cfg.Secrets.GoogleClientSecret,
		ResendAPIKey:       cfg.Secrets.ResendAPIKey,
		ArticleScaling:     Bounds{cfg.Scaling.Article.Min, cfg.Scaling.Article.Max},
		WebScaling:         Bounds{cfg.Scaling.Web.Min, cfg.Scaling.Web.Max},
		CPUTarget:          cfg.Scaling.CPUTarget,
		Images:             cfg.Images,
		Registry: RegistrySettings{
			Kind:     cfg.Registry.Kind,
			Server:   cfg.Registry.Server,
			Username: cfg.Registry.Username,
			Password: cfg.Secrets.RegistryPassword,
			Name:     cfg.Registry.Name,
			Region:   cfg.Cluster.Region,
		},
		JWTKeyGeneration: cfg.JWT.KeyGeneration,
		Storage: StorageSizes{
			Postgres: cfg.Storage.Postgres, Redis: cfg.Storage.Redis, NATS: cfg.Storage.NATS,
			Media: cfg.Storage.Media, Backups: cfg.Storage.Backups,
		},
		DatastoreImages:     datastores.Images(cfg.DatastoreImages),
		BackupSchedule:      cfg.Backup.Schedule,
		BackupRetentionDays: cfg.Backup.RetentionDays,
		Protect:             cfg.Protect,
		// Render mode writes manifests and never waits on a cluster.
		SkipAwait: cfg.Cluster.Mode == stacks.ModeRender,
		DependsOn: ready,
	}
}
