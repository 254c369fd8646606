#include "CCurlShim.h"

CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value) { return curl_easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_ptr(CURL *handle, CURLoption option, const void *value) { return curl_easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_off(CURL *handle, CURLoption option, curl_off_t value) { return curl_easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_write_function(CURL *handle, ccurl_data_callback callback) { return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback); }
CURLcode ccurl_setopt_header_function(CURL *handle, ccurl_data_callback callback) { return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, callback); }
CURLcode ccurl_setopt_read_function(CURL *handle, ccurl_data_callback callback) { return curl_easy_setopt(handle, CURLOPT_READFUNCTION, callback); }
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value) { return curl_easy_getinfo(handle, info, value); }
CURLcode ccurl_setopt_xferinfo_function(CURL *handle, ccurl_xferinfo_callback callback) { return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, callback); }
CURLcode ccurl_setopt_seek_function(CURL *handle, ccurl_seek_callback callback) { return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, callback); }
CURLcode ccurl_global_init_default(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }
long ccurl_error_size(void) { return CURL_ERROR_SIZE; }
