package qis

import (
	"context"
	"errors"
	"os"
	"os/user"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// UserMetadataKey is the metadata key that names the caller in development mode.
const UserMetadataKey = "x-qis-user"

// User sends its name as x-qis-user metadata on every call: the development-mode identity.
// It implements credentials.PerRPCCredentials; use it through [WithUser] or
// grpc.WithPerRPCCredentials. The server refuses a call that carries the key twice, so set one
// identity per connection (not also in outgoing context metadata).
type User string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (u User) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if u == "" {
		return nil, errors.New("qis: empty user name")
	}
	return map[string]string{UserMetadataKey: string(u)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the development-mode
// identity works over plaintext connections.
func (User) RequireTransportSecurity() bool { return false }

// BearerToken sends "authorization: Bearer TOKEN" on every call, the identity that signed
// tokens will carry (the server's interceptor accepts x-qis-user only, for now). Over a
// plaintext connection gRPC refuses to send it unless AllowInsecure is set (for local tests).
type BearerToken struct {
	Token         string
	AllowInsecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b BearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.Token == "" {
		return nil, errors.New("qis: empty bearer token")
	}
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b BearerToken) RequireTransportSecurity() bool { return !b.AllowInsecure }

// WithUser is the dial option that sends name as x-qis-user on every call.
func WithUser(name string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(User(name))
}

// UserFromEnv is the user name the qis command line uses too: $QIS_USER, else the login name.
func UserFromEnv() string {
	if name := os.Getenv("QIS_USER"); name != "" {
		return name
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// Dial opens a plaintext connection (development mode) to a qis service at target
// ("127.0.0.1:50051") that sends id with every call; opts are added after the defaults. For
// TLS, pass grpc.WithTransportCredentials(...) in opts: the last transport option wins.
func Dial(target string, id credentials.PerRPCCredentials, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	all := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if id != nil {
		all = append(all, grpc.WithPerRPCCredentials(id))
	}
	return grpc.NewClient(target, append(all, opts...)...)
}
