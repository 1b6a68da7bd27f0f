package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/internal/dbtest"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// testPKI is a CA that signed a server certificate for 127.0.0.1 and a client
// certificate, each written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile     string
	clientCertFile, clientKeyFile string
	ca                            *x509.CertPool
	client                        tls.Certificate
	serverExpiry                  time.Time
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	return newTestPKIValidFor(t, time.Hour)
}

// newTestPKIValidFor makes a testPKI whose server certificate expires after
// valid, to the second.
func newTestPKIValidFor(t *testing.T, valid time.Duration) *testPKI {
	t.Helper()
	expiry := time.Now().Add(valid).Truncate(time.Second)
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: expiry}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ip net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: expiry}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p := &testPKI{ca: x509.NewCertPool(), serverExpiry: expiry}
	p.ca.AddCert(caCert)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	p.certFile = write("server.pem", "CERTIFICATE", srvDER)
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	p.keyFile = write("server-key.pem", "EC PRIVATE KEY", keyDER)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	p.clientCertFile = write("client.pem", "CERTIFICATE", cliDER)
	cliKeyDER, _ := x509.MarshalECPrivateKey(cliKey)
	p.clientKeyFile = write("client-key.pem", "EC PRIVATE KEY", cliKeyDER)
	return p
}

// serve with --tls-cert/--tls-key/--client-ca: a client presenting a
// certificate the CA signed is served (and still needs its token); one
// without a certificate, or speaking plaintext, is not. The demo reaches it
// with --tls-ca and its client certificate.
func TestServeMutualTLS(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	pki := newTestPKI(t)
	const secret = "tok-finance-tls-test-0123456789"
	const demoSecret = "tok-demo-tls-test-0123456789"
	t.Setenv("COINLEDGER_TOKENS", "finance finance "+secret+";demo iap,gifting,creator-portal,finance,admin "+demoSecret)
	addr := freeAddr(t)
	ctx := context.Background()
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", "",
		"--tls-cert", pki.certFile, "--tls-key", pki.keyFile, "--client-ca", pki.caFile, "--log-level", "warn")
	dial := func(cfg *tls.Config) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	withCert := dial(&tls.Config{RootCAs: pki.ca, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12})
	waitServing(t, ctx, withCert, &srv.out, &srv.errOut)
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
	if _, err := pb.NewLedgerServiceClient(withCert).Verify(authed, &pb.VerifyRequest{}); err != nil {
		t.Errorf("verify over mutual TLS: %v", err)
	}
	if _, err := pb.NewLedgerServiceClient(withCert).Verify(ctx, &pb.VerifyRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a client certificate without a token: %v", err)
	}
	short, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	noCert := dial(&tls.Config{RootCAs: pki.ca, MinVersion: tls.VersionTLS12})
	if _, err := healthpb.NewHealthClient(noCert).Check(short, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a client without a certificate: %v", err)
	}
	demo := []string{"demo", "--addr", addr, "--token", demoSecret, "--viewers", "3", "--gifts", "6", "-c", "2", "--log-level", "warn"}
	if code, demoOut, demoErr := runCmd(t, append(demo, "--tls-ca", pki.caFile, "--client-cert", pki.clientCertFile, "--client-key", pki.clientKeyFile)...); code != exitOK || !strings.Contains(demoOut, ": OK (") {
		t.Errorf("demo over mutual TLS: exit %d\n%s\n%s", code, demoOut, demoErr)
	}
	for name, args := range map[string][]string{
		"no client certificate":          append(demo, "--tls-ca", pki.caFile),
		"plaintext":                      demo,
		"a certificate without --tls-ca": append(demo, "--client-cert", pki.clientCertFile, "--client-key", pki.clientKeyFile),
	} {
		if code, _, demoErr := runCmd(t, args...); code != exitError {
			t.Errorf("demo with %s: exit %d\n%s", name, code, demoErr)
		}
	}
	srv.stop(t)
}
