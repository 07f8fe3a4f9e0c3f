// Package devca is a small file-backed certificate authority for
// development and demos: it issues device certificates the way a UEM's
// SCEP profile does (the device id in a URI SAN, the user in an email SAN
// and a UPN otherName), server certificates, and CRLs. The quickstart and
// the `portcullis ca` commands use it.
//
// Its keys sit unencrypted on disk: it is not for production.
package devca
