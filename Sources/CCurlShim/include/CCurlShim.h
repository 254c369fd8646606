#ifndef CCURLSHIM_H
#define CCURLSHIM_H
#include <curl/curl.h>

// libcurl's curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call.
// These typed wrappers are all the project uses.
CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode ccurl_setopt_ptr(CURL *handle, CURLoption option, const void *value);
CURLcode ccurl_setopt_off(CURL *handle, CURLoption option, curl_off_t value);
typedef size_t (*ccurl_data_callback)(char *data, size_t size, size_t count, void *context);
CURLcode ccurl_setopt_write_function(CURL *handle, ccurl_data_callback callback);
CURLcode ccurl_setopt_header_function(CURL *handle, ccurl_data_callback callback);
CURLcode ccurl_setopt_read_function(CURL *handle, ccurl_data_callback callback);
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value);

// Added for the HTTP client (Sources/Shared/HTTP).

/// Progress callback (CURLOPT_XFERINFOFUNCTION); returning non-zero aborts the transfer
/// with CURLE_ABORTED_BY_CALLBACK. Used for task cancellation.
typedef int (*ccurl_xferinfo_callback)(void *context, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
CURLcode ccurl_setopt_xferinfo_function(CURL *handle, ccurl_xferinfo_callback callback);
/// Seek callback (CURLOPT_SEEKFUNCTION), so libcurl can rewind a streamed upload body when it
/// re-sends a request on a fresh connection. Return CURL_SEEKFUNC_OK / _FAIL / _CANTSEEK.
typedef int (*ccurl_seek_callback)(void *context, curl_off_t offset, int origin);
CURLcode ccurl_setopt_seek_function(CURL *handle, ccurl_seek_callback callback);
/// curl_global_init(CURL_GLOBAL_DEFAULT); call once per process before any other thread uses libcurl.
CURLcode ccurl_global_init_default(void);
/// The size of the buffer CURLOPT_ERRORBUFFER needs (CURL_ERROR_SIZE).
long ccurl_error_size(void);
#endif
