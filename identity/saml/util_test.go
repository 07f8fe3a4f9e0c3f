package saml

import (
	"io"
	"net/http"
	"net/http/httptest"
)

func httptestRequest(method, target string, body io.Reader) *http.Request {
	return httptest.NewRequest(method, target, body)
}

func recorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
